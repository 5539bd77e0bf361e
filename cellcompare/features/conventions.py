"""Conventions of the order statistics: which quantile definition the Intensity family uses.

CellProfiler 4 (``MeasureObjectIntensity``) reads the quartiles and median of an object's
sorted pixels at position ``n * q`` and the MAD (median absolute deviation) at ``n / 2`` of the
sorted deviations, interpolating linearly to the next value (clamped at the last). cp_measure
kept this as ``legacy=True`` and, since 0.2.0, defaults to ``numpy.percentile``'s linear
definition, position ``(n - 1) * q``. Only the four columns ``LowerQuartileIntensity``,
``MedianIntensity``, ``UpperQuartileIntensity`` and ``MADIntensity`` differ (and the edge
columns not at all); on objects of a few hundred pixels the difference is below one grey level
but systematic.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

__all__ = ["CONVENTIONS", "Convention", "DEFAULT_CONVENTION", "RECORDED_BEFORE", "get_convention"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Convention:
    """One quantile definition: an order statistic ``q`` of ``n`` values sits at position
    ``(n - 1 + rank_offset) * q`` of the sorted values (0-based), interpolated linearly.

    Attributes
    ----------
    name : str
        The value of ``features.conventions``.
    rank_offset : float
        ``1`` for CellProfiler 4 (``n * q``), ``0`` for cp_measure's default (``(n - 1) * q``).
    cp_measure_legacy : bool
        The ``legacy=`` of cp_measure that gives the same numbers.
    """

    name: str
    rank_offset: float
    cp_measure_legacy: bool

    def position(self, n: int, q: float) -> float:
        """0-based position of quantile ``q`` among ``n`` sorted values.

        Examples
        --------
        >>> get_convention("cellprofiler4").position(10, 0.25), get_convention("cp_measure").position(10, 0.25)
        (2.5, 2.25)
        """
        return (n - 1 + self.rank_offset) * q


#: The conventions by name; ``cellprofiler4`` is the default because users compare with
#: CellProfiler's own tables.
CONVENTIONS: dict[str, Convention] = {
    "cellprofiler4": Convention("cellprofiler4", 1.0, True),
    "cp_measure": Convention("cp_measure", 0.0, False),
}
DEFAULT_CONVENTION = "cellprofiler4"
#: The convention of configurations recorded before ``conventions`` existed (manifests, model
#: directories): cellcompare then measured cp_measure's default.
RECORDED_BEFORE = "cp_measure"


def get_convention(name: str) -> Convention:
    """The :class:`Convention` called ``name``; ``ValueError`` naming the choices otherwise."""
    try:
        return CONVENTIONS[name]
    except KeyError:
        raise ValueError(f"features.conventions must be one of {sorted(CONVENTIONS)}, "
                         f"got {name!r}") from None
