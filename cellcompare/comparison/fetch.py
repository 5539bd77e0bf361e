"""``cellcompare fetch RESULTS``: the cells to annotate next, as CellProfiler Analyst fetches them.

After a cell task (``labels.level: cell``) the best classical model of the run (by the run's
primary metric) scores every segmented cell: a labelled cell by its out-of-fold probability
from ``predictions.parquet``, an unlabelled one by that model refitted on every labelled cell
(its leak guard applied). :func:`suggest_cells` then picks

- ``uncertain``: the smallest margin between the two most probable classes (active learning's
  margin rule: one annotation there moves the boundary most);
- ``positive``: the highest probability of the positive class (``fractions.positive_class``);
- ``random``: a uniform draw with the run's seed (an unbiased check of the model's rate).

With annotations as the label source, cells already annotated are never suggested again.
:func:`fetch_cells` writes ``fetch/<kind>.csv`` (``sample_id, x, y, label`` with ``label``
blank, then ``cell_id``, ``suggested`` and ``probability``): filled in and appended to the
annotations CSV, it goes straight back into ``labels.annotations``. Beside it,
``fetch/<kind>.png`` is a contact sheet of the cells' crops, numbered as the CSV's rows.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cellcompare import atomic
from cellcompare.comparison.cellids import CELL_COLUMN, cell_id
from cellcompare.fractions import positive_class

__all__ = ["FETCH_KINDS", "FetchError", "Fetched", "best_classical", "fetch_cells", "suggest_cells"]

log = logging.getLogger(__name__)
FETCH_KINDS = ("uncertain", "positive", "random")
ANNOTATION_COLUMNS = ["sample_id", "x", "y", "label"]


class FetchError(ValueError):
    """The results cannot be fetched from (not a cell task, no classical model, no cells)."""


@dataclass(frozen=True)
class Fetched:
    """What :func:`fetch_cells` wrote: the CSV, the contact sheet and the model that scored."""

    csv: Path
    sheet: Path | None
    model: str
    n: int


def suggest_cells(scores: pd.DataFrame, classes: list[str], kind: str, n: int, *,
                  positive: str, seed: int = 0) -> pd.DataFrame:
    """The ``n`` cells of ``scores`` to annotate next, best first.

    Parameters
    ----------
    scores : pd.DataFrame
        One row per candidate cell with ``proba_<class>`` columns.
    classes : list of str
        The classes, in the order of the probability columns.
    kind : {"uncertain", "positive", "random"}
        The rule (module docstring).
    n : int
        At most this many rows.
    positive : str
        The class ``positive`` ranks by.
    seed : int
        Seed of ``random``.

    Returns
    -------
    pd.DataFrame
        The chosen rows with ``suggested`` (most probable class) and ``probability`` (its
        probability, or the positive class's for ``positive``).

    Examples
    --------
    >>> import pandas as pd
    >>> scores = pd.DataFrame({"proba_neg": [0.9, 0.52, 0.2], "proba_pos": [0.1, 0.48, 0.8]})
    >>> suggest_cells(scores, ["neg", "pos"], "uncertain", 1, positive="pos").index.tolist()
    [1]
    >>> suggest_cells(scores, ["neg", "pos"], "positive", 2, positive="pos").index.tolist()
    [2, 1]
    """
    if kind not in FETCH_KINDS:
        raise FetchError(f"kind must be one of {FETCH_KINDS}, found {kind!r}")
    if n < 1:
        raise FetchError(f"--n must be >= 1, found {n}")
    proba = scores[[f"proba_{c}" for c in classes]].to_numpy(dtype=float)
    ranked = np.sort(proba, axis=1)
    frame = scores.assign(suggested=np.asarray(classes, dtype=object)[proba.argmax(axis=1)],
                          probability=ranked[:, -1])
    if kind == "uncertain":
        margin = ranked[:, -1] - (ranked[:, -2] if len(classes) > 1 else 0.0)
        order = np.lexsort((np.arange(len(frame)), margin))
    elif kind == "positive":
        frame["probability"] = frame[f"proba_{positive}"]
        order = np.lexsort((np.arange(len(frame)), -frame["probability"].to_numpy()))
    else:
        order = np.random.default_rng(seed).permutation(len(frame))
    return frame.iloc[order[:n]]


def best_classical(metrics: dict) -> str:
    """The classical model with the best mean of the run's primary metric (``metrics.json``)."""
    metric = (metrics.get("metric_names") or ["balanced_accuracy"])[0]
    scored = {label: (info.get("summary", {}).get(metric) or {}).get("mean")
              for label, info in (metrics.get("models") or {}).items()
              if info.get("kind") == "classical"}
    scored = {k: v for k, v in scored.items() if v is not None}
    if not scored:
        raise FetchError("the run has no classical cell model with scores; fetch scores cells with "
                         "one (add svm or xgboost with granularity: cell)")
    return max(sorted(scored), key=lambda m: scored[m])


def _scores(root: Path, config: Any, metrics: dict, label: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every cell's probabilities from model ``label``: ``(cells, scores)``, aligned rows."""
    from cellcompare.classical import make_classifier
    from cellcompare.comparison.celltable import read_cells
    from cellcompare.comparison.labels import guard_columns

    info = metrics["labels"]
    classes = list(metrics["classes"])
    cells = read_cells(config, root / "features", {"reads": []}, "fetch")
    cells.insert(0, CELL_COLUMN, cell_id(cells["Metadata_sample_id"], cells["Metadata_ObjectNumber"]))
    labels = pd.read_parquet(root / "cells" / "labels.parquet")
    labelled = cells[CELL_COLUMN].isin(set(labels[CELL_COLUMN].astype(str)))
    proba = np.full((len(cells), len(classes)), np.nan)
    preds = pd.read_parquet(root / "predictions.parquet")
    preds = preds[preds.model == label].sort_values("fold", ascending=False)  # CV folds first
    preds = preds.drop_duplicates("sample_id").set_index("sample_id")
    own = preds.reindex(cells[CELL_COLUMN].astype(str))[[f"proba_{c}" for c in classes]].to_numpy()
    proba[labelled.to_numpy()] = own[labelled.to_numpy()]
    rest = ~labelled.to_numpy() | ~np.isfinite(proba).all(axis=1)
    if rest.any():
        spec = metrics["models"][label]
        channel = (info.get("leak_guard") or {}).get("channel")
        table = cells.drop(columns=guard_columns(cells.columns, channel) if channel else [])
        table = table.drop(columns=[CELL_COLUMN])
        train = table[labelled.to_numpy()].merge(labels[["Metadata_sample_id", "Metadata_ObjectNumber",
                                                         "label"]],
                                                 on=["Metadata_sample_id", "Metadata_ObjectNumber"])
        params = {**spec.get("params", {}), "random_state": config.seed}
        model = make_classifier(spec["name"], granularity="cell", **params)
        log.info("fetch: fitting %s on %d labelled cells to score %d others", label, len(train),
                 int(rest.sum()))
        model.fit(train.drop(columns=["label"]), train["label"].astype(str).to_numpy())
        from cellcompare.proba import align_columns

        got = model.predict_proba(table[rest])
        proba[rest] = align_columns(got, model.classes_, classes)
    scores = pd.DataFrame(proba, columns=[f"proba_{c}" for c in classes])
    return cells, scores.assign(labelled=labelled.to_numpy())


def fetch_cells(results: str | Path, *, n: int = 50, kind: str = "uncertain",
                out: str | Path | None = None, crop_size: int = 48) -> Fetched:
    """Write the ``n`` cells of a cell-task run to annotate next (module docstring).

    Parameters
    ----------
    results : str or Path
        A finished comparison's results folder (``labels.level: cell``).
    n : int
        Cells to suggest.
    kind : {"uncertain", "positive", "random"}
        The rule.
    out : str or Path, optional
        Folder of the CSV and the contact sheet (default ``RESULTS/fetch``).
    crop_size : int
        Side of each crop of the contact sheet, in pixels.

    Returns
    -------
    Fetched
    """
    from cellcompare.comparison.config import load_config

    root = Path(results)
    path = root / "metrics.json"
    if not path.is_file():
        raise FetchError(f"{root} holds no metrics.json: not the results of a finished comparison")
    metrics = json.loads(path.read_text())
    info = metrics.get("labels") or {}
    if info.get("level") != "cell":
        raise FetchError(f"{root} is an image task; fetch suggests cells of a labels.level: cell run")
    if kind not in FETCH_KINDS:
        raise FetchError(f"kind must be one of {FETCH_KINDS}, found {kind!r}")
    config = load_config(root / "config.yaml")
    classes = list(metrics["classes"])
    label = best_classical(metrics)
    cells, scores = _scores(root, config, metrics, label)
    pool = ~scores["labelled"].to_numpy() if info.get("source") == "annotations" else np.ones(len(cells), bool)
    if not pool.any():
        raise FetchError(f"{root}: every segmented cell is already annotated; nothing to fetch")
    positive = positive_class(classes, info, info.get("class_counts"))
    chosen = suggest_cells(scores[pool], classes, kind, n, positive=positive, seed=config.seed)
    picked = cells.loc[chosen.index]
    table = pd.DataFrame({"sample_id": picked["Metadata_sample_id"].astype(str).to_numpy(),
                          "x": picked["Metadata_Location_Center_X"].to_numpy(dtype=float),
                          "y": picked["Metadata_Location_Center_Y"].to_numpy(dtype=float),
                          "label": "", CELL_COLUMN: picked[CELL_COLUMN].astype(str).to_numpy(),
                          "suggested": chosen["suggested"].to_numpy(),
                          "probability": chosen["probability"].to_numpy(dtype=float)})
    folder = Path(out) if out is not None else root / "fetch"
    folder.mkdir(parents=True, exist_ok=True)
    csv = folder / f"{kind}.csv"
    with atomic.atomic_path(csv) as tmp:
        table.to_csv(tmp, index=False)
    sheet = _sheet(config, table, folder / f"{kind}.png", crop_size, f"{kind} cells ({label})")
    log.info("fetch: %d %s cells scored by %s written to %s", len(table), kind, label, csv)
    return Fetched(csv, sheet, label, len(table))


def _sheet(config: Any, table: pd.DataFrame, path: Path, crop_size: int, title: str) -> Path | None:
    """The contact sheet of ``table``'s cells, cut from the dataset's images (every channel)."""
    from cellcompare.deep.crops import cut_crops
    from cellcompare.deep.inputs import sample_input
    from cellcompare.display import contact_sheet

    if not len(table):
        return None
    ds = config.dataset.open()
    crops = [None] * len(table)
    for image, part in table.groupby("sample_id", sort=False):
        pixels = sample_input(ds.get(image), None)
        centers = part[["y", "x"]].to_numpy(dtype=float)
        for position, crop in zip(part.index, cut_crops(pixels, centers, crop_size)):
            crops[position] = crop
    captions = [f"{i + 1}: {r.suggested} {r.probability:.2f}" for i, r in enumerate(table.itertuples())]
    return contact_sheet(np.stack(crops), captions, path, title=title)
