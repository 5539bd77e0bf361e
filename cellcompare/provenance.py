"""Installed versions of the packages a result depends on (for manifests and sidecars)."""

from __future__ import annotations

from importlib import metadata
from typing import Iterable

__all__ = ["package_versions"]

# distributions published under more than one name: the CPU-only xgboost wheel, and
# cp-measure's normalised wheel name
_ALIASES = {"xgboost": ("xgboost", "xgboost-cpu"), "cp-measure": ("cp-measure", "cp_measure")}


def package_versions(names: Iterable[str], *, missing: str | None = None) -> dict[str, str | None]:
    """Return ``{name: installed version}`` for each distribution name.

    Parameters
    ----------
    names : iterable of str
        Distribution names as on PyPI (``"scikit-learn"``, ``"xgboost"``, ...).
    missing : str or None
        Value recorded for a package that is not installed.

    Returns
    -------
    dict
        One entry per name, in the given order.

    Examples
    --------
    >>> import numpy as np
    >>> from cellcompare.provenance import package_versions
    >>> package_versions(["numpy"])["numpy"] == np.__version__
    True
    >>> package_versions(["no-such-package"], missing="absent")
    {'no-such-package': 'absent'}
    """
    out: dict[str, str | None] = {}
    for name in names:
        out[name] = missing
        for dist in _ALIASES.get(name, (name,)):
            try:
                out[name] = metadata.version(dist)
                break
            except metadata.PackageNotFoundError:
                continue
    return out
