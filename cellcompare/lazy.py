"""A package's public names, imported from their modules on first use (PEP 562).

The command line imports every step's ``cli`` module to build its parser, and importing
``cellcompare.comparison.cli`` runs ``cellcompare/comparison/__init__.py``; with lazy exports
that no longer loads torch, matplotlib and the models, so ``cellcompare serve`` for a
classical model holds neither torch nor the report's plotting stack.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, exports: Mapping[str, str],
                 namespace: dict[str, Any]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """``__getattr__`` and ``__dir__`` for ``package`` whose names live in its modules.

    Parameters
    ----------
    package : str
        The package's ``__name__``.
    exports : mapping
        ``{public name: module of the package that defines it}``.
    namespace : dict
        The package's ``globals()``; a name, once imported, is stored there.

    Returns
    -------
    tuple of callables
        Assign them to the package's ``__getattr__`` and ``__dir__``.

    Examples
    --------
    >>> space: dict = {}
    >>> getattr_, dir_ = lazy_exports("cellcompare", {"to_float": "datasets.sample"}, space)
    >>> getattr_("to_float").__name__, "to_float" in space
    ('to_float', True)
    >>> getattr_("nothing")
    Traceback (most recent call last):
    AttributeError: module 'cellcompare' has no attribute 'nothing'
    """
    def __getattr__(name: str) -> Any:
        if name not in exports:  # a submodule (``from pkg import cli``) is then imported as usual
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{exports[name]}"), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
