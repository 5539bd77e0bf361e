"""The report's section for cell tasks (``labels.level: cell``): gate histogram and cell galleries.

Reads only result files written by comparison: ``metrics.json`` ``labels``, ``cells/gate.parquet``
(gate feature value and label per cell), ``cells/gallery.parquet`` + ``cells/gallery.npy``
(CellProfiler Analyst's "fetch cells": right and wrong cells per class, with probabilities).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from cellcompare.display import crop_rgb
from cellcompare.reports.figures import ReportFigure
from cellcompare.reports.theme import array_to_data_uri, figure_to_data_uri

__all__ = ["cells_section", "crop_rgb", "gate_figure"]


def gate_figure(values: pd.DataFrame, info: dict) -> ReportFigure:
    """Histogram of the gate feature over all cells with the threshold drawn."""
    fig, ax = plt.subplots(figsize=(6.5, 3.0))
    finite = values[np.isfinite(values["value"])]
    bins = np.histogram_bin_edges(finite["value"], bins=60)
    for label, part in finite.groupby("label", sort=True):
        ax.hist(part["value"], bins=bins, alpha=0.7, label=f"{label} ({len(part)})")
    ax.axvline(info["threshold"], color="black", linestyle="--", linewidth=1)
    ax.set_yscale("log")
    ax.set_xlabel(info["feature"])
    ax.set_ylabel("cells")
    ax.legend(frameon=False)
    rule = info.get("threshold_rule")
    caption = (f"Gate on {info['feature']}: threshold {info['threshold']:.4g} "
               f"({'Otsu' if rule == 'otsu' else 'fixed'}); cells above are {info['above']!r}, "
               f"the others {info['below']!r}.")
    return ReportFigure("Gate", figure_to_data_uri(fig), caption)


def _gallery(root: Path) -> dict[str, Any] | None:
    table_path, crops_path = root / "cells" / "gallery.parquet", root / "cells" / "gallery.npy"
    if not table_path.is_file() or not crops_path.is_file():
        return None
    table = pd.read_parquet(table_path)
    crops = np.load(crops_path)
    groups = []
    for (label, kind), part in table.groupby(["true_label", "kind"], sort=True):
        items = [{"uri": array_to_data_uri(crop_rgb(crops[int(r.position)])),
                  "caption": f"{r.cell_id}: {r.predicted} {r.probability:.2f}"}
                 for r in part.itertuples(index=False)]
        groups.append({"label": str(label), "kind": str(kind), "cells": items})
    return {"model": str(table["model"].iloc[0]) if len(table) else "", "groups": groups}


def cells_section(results: Any) -> dict[str, Any] | None:
    """Everything the template shows for a cell task, or ``None`` for an image task."""
    info = (results.metrics.get("labels") or {})
    if info.get("level") != "cell":
        return None
    root = Path(results.root)
    gate = None
    gate_path = root / "cells" / "gate.parquet"
    if info.get("source") == "gate" and gate_path.is_file():
        gate = gate_figure(pd.read_parquet(gate_path), info)
    guard = info.get("leak_guard") or {}
    return {"info": info, "gate": gate, "gallery": _gallery(root), "leak_note": guard.get("note"),
            "warnings": list(info.get("warnings") or []),
            "counts": info.get("class_counts") or {},
            "fractions": _fractions(root, results.metrics), "fetch": _fetch_preview(root)}


#: Images shown in the report's fraction table (the CSV has them all).
SHOWN_IMAGES = 30


def _fractions(root: Path, metrics: dict) -> dict[str, Any] | None:
    """``cells/fractions.csv`` as the template's table (fractions as percentages)."""
    path = root / "cells" / "fractions.csv"
    if not path.is_file():
        return None
    from cellcompare.fractions import positive_class

    table = pd.read_csv(path, dtype={"image": str})
    info = metrics.get("labels") or {}
    models = [c[len("fraction_"):] for c in table.columns
              if c.startswith("fraction_") and c != "fraction_truth"]

    def pct(v: float) -> str:
        return "" if pd.isna(v) else f"{100 * float(v):.1f} %"

    rows = [{"image": r["image"], "n_cells": int(r["n_cells"]), "truth": pct(r["fraction_truth"]),
             "models": [pct(r[f"fraction_{m}"]) for m in models]}
            for _, r in table.head(SHOWN_IMAGES).iterrows()]
    return {"positive": positive_class(metrics.get("classes") or [], info, info.get("class_counts")),
            "models": models, "rows": rows, "more": max(0, len(table) - SHOWN_IMAGES)}


def _fetch_preview(root: Path) -> dict[str, Any] | None:
    path = root / "cells" / "fetch_preview.csv"
    if not path.is_file():
        return None
    table = pd.read_csv(path, dtype=str).assign(
        probability=lambda t: t["probability"].astype(float))
    return {"model": str(table["model"].iloc[0]) if len(table) else "", "results": str(root),
            "rows": table.to_dict("records")}
