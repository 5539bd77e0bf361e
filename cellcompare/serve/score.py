"""``cellcompare score MODEL_DIR DATASET``: every cell of new images, and their positive fractions.

CellProfiler Analyst's "score all": an exported cell model (``labels.level: cell``, or any
``granularity: cell`` model) is applied to every segmented cell of every image of a dataset,
a plate at a time, normalised as ``cellcompare predict`` normalises (``serve.normalization``).
:func:`score_dataset` writes

- ``cells.parquet``: one row per cell -- image, plate, well, object number, centre, the
  predicted class and each class's probability;
- ``images.csv``: per image, the cells of each class, their fractions and ``n_cells``, plus
  ``error`` for an image that could not be scored (it has no other value);
- ``wells.csv`` and ``plate_<plate>.png`` (a heat map of the positive fraction per well) where
  the layout names wells.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cellcompare import atomic
from cellcompare.fractions import class_fractions, fraction_column, plate_wells, positive_class, well_position
from cellcompare.progress import progress_bar
from cellcompare.serve.normalization import MIN_PLATE_IMAGES

__all__ = ["Scored", "plate_heatmap", "score_dataset"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Scored:
    """What :func:`score_dataset` wrote and counted."""

    files: dict[str, Path]
    positive: str
    n_images: int
    n_failed: int
    n_cells: int
    failures: list[tuple[str, str]] = field(default_factory=list)


def _positive(predictor: Any) -> str:
    task = predictor.meta.get("task") or {}
    if task.get("positive") in predictor.classes:
        return str(task["positive"])
    return positive_class(predictor.classes)


def plate_heatmap(wells: pd.DataFrame, column: str, title: str) -> Any | None:
    """A plate's heat map of ``column`` per well (a matplotlib figure), None without wells.

    ``wells`` holds one plate's ``well`` and ``column``; wells whose names are not a row
    letter and a column number (``B02``) are left out.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    spots = [(well_position(w), v) for w, v in zip(wells["well"], wells[column])]
    spots = [(p, v) for p, v in spots if p is not None]
    if not spots:
        return None
    rows = max(16 if max(p[0] for p, _ in spots) >= 8 else 8, max(p[0] for p, _ in spots) + 1)
    cols = max(24 if max(p[1] for p, _ in spots) >= 12 else 12, max(p[1] for p, _ in spots) + 1)
    grid = np.full((rows, cols), np.nan)
    for (r, c), v in spots:
        grid[r, c] = v
    fig, ax = plt.subplots(figsize=(0.4 * cols + 1.5, 0.4 * rows + 1.0))
    shown = ax.imshow(grid, cmap="viridis", vmin=0, vmax=max(1e-9, float(np.nanmax(grid))))
    ax.set_xticks(range(cols), [str(c + 1) for c in range(cols)], fontsize=6)
    ax.set_yticks(range(rows), [chr(ord("A") + r) if r < 26 else str(r + 1) for r in range(rows)],
                  fontsize=6)
    ax.set_title(title, fontsize=8)
    fig.colorbar(shown, ax=ax, shrink=0.8)
    return fig


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name) or "plate"


def score_dataset(predictor: Any, dataset: Any, out: str | Path, *,
                  min_plate_images: int = MIN_PLATE_IMAGES) -> Scored:
    """Score every cell of ``dataset`` with a cell model and write the tables of the module.

    Parameters
    ----------
    predictor : serve.predictor.ClassicalPredictor or DeepPredictor
        A loaded cell model (``serve.load_predictor``).
    dataset : datasets.ImageDataset
        The images (any layout); each plate (``Metadata_Plate`` or ``group``) is one batch.
    out : str or Path
        Folder to write into (created).
    min_plate_images : int
        Fewest images of an unseen plate normalised by their own statistics.

    Returns
    -------
    Scored
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    classes = list(predictor.classes)
    positive = _positive(predictor)
    places = plate_wells(dataset.index)
    frames, failures = [], []
    with progress_bar(total=len(places), desc="score", unit="img", leave=False) as bar:
        for plate, part in places.groupby("plate", sort=True):
            ids = part["sample_id"].tolist()

            def loader(sid: str):
                def load():
                    bar.update()
                    return dataset.get(sid)
                return load

            outcomes, cells = predictor.predict_cells([(sid, loader(sid)) for sid in ids],
                                                      group=plate or None,
                                                      min_plate_images=min_plate_images)
            for position, outcome in enumerate(outcomes):
                if outcome.error is not None:
                    failures.append((ids[position], f"{type(outcome.error).__name__}: {outcome.error}"))
                    continue
                frames.append(cells[position].assign(Metadata_sample_id=ids[position]))
    for sid, why in failures[:5]:
        log.warning("cannot score %s: %s", sid, why)
    table = (pd.concat(frames, ignore_index=True) if frames
             else pd.DataFrame(columns=["Metadata_sample_id", "Metadata_ObjectNumber"]))
    proba = table[[f"proba_{c}" for c in classes]].to_numpy(dtype=float) if frames else np.zeros((0, len(classes)))
    table["predicted"] = np.asarray(classes, dtype=object)[proba.argmax(axis=1)] if len(table) else []
    table = table.merge(places.rename(columns={"sample_id": "Metadata_sample_id"}),
                        on="Metadata_sample_id", how="left")
    front = ["Metadata_sample_id", "plate", "well", "Metadata_ObjectNumber",
             "Metadata_Location_Center_X", "Metadata_Location_Center_Y", "predicted"]
    table = table[front + [c for c in table.columns if c not in front]]
    files = {"cells": out / "cells.parquet", "images": out / "images.csv"}
    with atomic.atomic_path(files["cells"]) as tmp:
        table.to_parquet(tmp, index=False)
    images = _images_table(table, places, classes, failures)
    with atomic.atomic_path(files["images"]) as tmp:
        images.to_csv(tmp, index=False)
    if places["well"].notna().all() and len(table):
        files.update(_wells(table, classes, positive, out))
    log.info("scored %d cells of %d images (%d failed); %s per image in %s", len(table),
             len(places) - len(failures), len(failures), fraction_column(positive), files["images"])
    return Scored(files, positive, len(places), len(failures), len(table), failures)


def _images_table(table: pd.DataFrame, places: pd.DataFrame, classes: list[str],
                  failures: list[tuple[str, str]]) -> pd.DataFrame:
    """Per image: plate, well, counts and fractions; failed images carry only ``error``."""
    scored = class_fractions(table, ["Metadata_sample_id"], "predicted", classes)
    scored = scored.rename(columns={"Metadata_sample_id": "sample_id"})
    images = places.merge(scored, on="sample_id", how="left")
    images["error"] = images["sample_id"].map(dict(failures)).astype(object).fillna("")
    return images


def _wells(table: pd.DataFrame, classes: list[str], positive: str, out: Path) -> dict[str, Path]:
    """``wells.csv`` and one heat map per plate of the positive fraction."""
    wells = class_fractions(table, ["plate", "well"], "predicted", classes)
    files = {"wells": out / "wells.csv"}
    with atomic.atomic_path(files["wells"]) as tmp:
        wells.to_csv(tmp, index=False)
    import matplotlib.pyplot as plt

    for plate, part in wells.groupby("plate", sort=True):
        fig = plate_heatmap(part, fraction_column(positive),
                            f"plate {plate or '(none)'}: fraction of {positive} cells per well")
        if fig is None:
            log.info("plate %s: well names are not row letter + column number; no heat map", plate)
            continue
        path = out / f"plate_{_safe(str(plate))}.png"
        with atomic.atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
        plt.close(fig)
        files[f"plate_{plate}"] = path
    return files
