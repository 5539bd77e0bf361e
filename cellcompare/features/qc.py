"""Segmentation QC as numbers: per-image counts and sizes, implausible images, run-level caveats.

The per-image table carries the ``Metadata_QC_*`` columns written at extraction
(:data:`features.extract.QC_COLUMNS`). :func:`segmentation_qc` reads them: it flags images with
no object, or whose count or median size is far from the dataset's median, and says when the
whole segmentation is doubtful (a material share of flagged images, a median object far from
the expected diameter, most objects discarded by the size filter).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["FAR", "MATERIAL_SHARE", "segmentation_qc"]

#: A count or size this many times above or below the dataset's median is implausible.
FAR = 3.0
#: Share of flagged images above which the answer carries a caveat.
MATERIAL_SHARE = 0.10


def _flags(counts: np.ndarray, sizes: np.ndarray, median_count: float, median_size: float) -> list[str]:
    out = []
    for count, size in zip(counts, sizes):
        reasons = []
        if count == 0:
            reasons.append("no object")
        elif median_count > 0 and not median_count / FAR <= count <= median_count * FAR:
            reasons.append(f"{int(count)} objects vs a median of {median_count:g}")
        if np.isfinite(size) and np.isfinite(median_size) and median_size > 0 and \
                not median_size / FAR <= size <= median_size * FAR:
            reasons.append(f"median diameter {size:.1f} px vs {median_size:.1f} px")
        out.append("; ".join(reasons))
    return out


def segmentation_qc(images: pd.DataFrame, diameter: Sequence[float] | None = None,
                    *, whole_object: bool = False) -> dict[str, Any]:
    """QC numbers of a run's segmentation from its per-image table.

    Parameters
    ----------
    images : pd.DataFrame
        Per-image feature table with ``Metadata_sample_id``, ``Metadata_Object_Count`` and the
        ``Metadata_QC_*`` columns.
    diameter : (float, float), optional
        The expected nucleus diameter range in pixels.
    whole_object : bool
        One object per image is expected (whole-object mode): only images without it are
        flagged.

    Returns
    -------
    dict
        ``n_images``, ``objects_per_image`` (median, min, max), ``median_diameter``,
        ``foreground_fraction`` (median), ``discarded`` (small, large, border, share of the
        objects found), ``flagged`` (``[{sample_id, reason}]``), ``flagged_share`` and
        ``caveats`` (sentences; empty when the segmentation looks plausible).

    Examples
    --------
    >>> import pandas as pd
    >>> from cellcompare.features.qc import segmentation_qc
    >>> table = pd.DataFrame({"Metadata_sample_id": list("abcd"),
    ...                       "Metadata_Object_Count": [40, 44, 0, 38],
    ...                       "Metadata_QC_Found": [45, 50, 3, 41],
    ...                       "Metadata_QC_DiscardedSmall": [5, 6, 3, 3],
    ...                       "Metadata_QC_MedianDiameter": [18.0, 19.5, float("nan"), 17.0]})
    >>> qc = segmentation_qc(table, diameter=(9, 38))
    >>> qc["flagged"], qc["flagged_share"]
    ([{'sample_id': 'c', 'reason': 'no object'}], 0.25)
    >>> qc["caveats"][0]
    'segmentation QC flags 1 of 4 images (25%) as implausible, e.g. c: no object'
    """
    counts = images["Metadata_Object_Count"].to_numpy(dtype=float)
    sizes = (images["Metadata_QC_MedianDiameter"].to_numpy(dtype=float)
             if "Metadata_QC_MedianDiameter" in images else np.full(len(images), np.nan))
    ids = images["Metadata_sample_id"].astype(str).tolist()
    median_count = float(np.median(counts)) if len(counts) else 0.0
    finite = sizes[np.isfinite(sizes) & (counts > 0)]
    median_size = float(np.median(finite)) if len(finite) else float("nan")
    if whole_object:
        reasons = ["no object" if c == 0 else "" for c in counts]
    else:
        reasons = _flags(counts, sizes, median_count, median_size)
    flagged = [{"sample_id": sid, "reason": r} for sid, r in zip(ids, reasons) if r]
    share = len(flagged) / len(ids) if ids else 0.0
    found = float(images["Metadata_QC_Found"].sum()) if "Metadata_QC_Found" in images else float(counts.sum())
    discarded = {k: int(images[f"Metadata_QC_Discarded{k.title()}"].sum())
                 if f"Metadata_QC_Discarded{k.title()}" in images else 0
                 for k in ("small", "large", "border")}
    discarded["share"] = round(sum(discarded.values()) / found, 4) if found else 0.0
    fg = images["Metadata_QC_ForegroundFraction"] if "Metadata_QC_ForegroundFraction" in images else None
    caveats = []
    if flagged and share >= MATERIAL_SHARE:
        first = flagged[0]
        caveats.append(f"segmentation QC flags {len(flagged)} of {len(ids)} images ({share:.0%}) as "
                       f"implausible, e.g. {first['sample_id']}: {first['reason']}")
    if diameter is not None and np.isfinite(median_size) and not whole_object and \
            not float(diameter[0]) <= median_size <= float(diameter[1]):
        caveats.append(f"the median segmented object is {median_size:.1f} px across, outside the "
                       f"expected diameter {float(diameter[0]):g}-{float(diameter[1]):g} px")
    if discarded["share"] > 0.5:
        caveats.append(f"the size filter discarded {discarded['share']:.0%} of the objects found: "
                       "the threshold may be picking up background")
    return {"n_images": len(ids),
            "objects_per_image": {"median": median_count, "min": int(counts.min()) if len(counts) else 0,
                                  "max": int(counts.max()) if len(counts) else 0},
            "median_diameter": None if not np.isfinite(median_size) else round(median_size, 2),
            "foreground_fraction": None if fg is None else round(float(fg.median()), 4),
            "discarded": discarded, "flagged": flagged, "flagged_share": round(share, 4),
            "caveats": caveats}
