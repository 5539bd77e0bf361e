"""Well-level results: site probabilities averaged per well, metrics per well beside per site.

A well's sites (RxRx1: 2 per well) share one treatment, so the field reports accuracy per well
as well as per image; averaging the sites' class probabilities is the usual way to get there.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cellcompare.comparison.metrics import METRIC_NAMES, compute_metrics
from cellcompare.comparison.results import model_summary, write_parquet

logger = logging.getLogger(__name__)

__all__ = ["WellLabelError", "well_keys", "well_metrics", "well_probabilities", "well_results"]

WELL_PREDICTIONS = "well_predictions.parquet"


class WellLabelError(ValueError):
    """The sites of one well carry different labels (a well holds one treatment)."""


def well_keys(index: pd.DataFrame) -> pd.Series | None:
    """The well of each sample of a dataset index, or None when the layout knows no wells.

    Parameters
    ----------
    index : pd.DataFrame
        ``ImageDataset.index``: ``sample_id`` and the layout's metadata.

    Returns
    -------
    pd.Series or None
        Indexed by sample id: ``"{Metadata_Plate}/{Metadata_Well}"`` where both are known
        (every layout that names plates and wells), else RxRx1's ``well_id``.
    """
    if "sample_id" not in index.columns or index.empty:
        return None
    ids = index["sample_id"].astype(str).to_numpy()
    if {"Metadata_Plate", "Metadata_Well"} <= set(index.columns) and \
            index[["Metadata_Plate", "Metadata_Well"]].notna().all(axis=None):
        keys = index["Metadata_Plate"].astype(str) + "/" + index["Metadata_Well"].astype(str)
        return pd.Series(keys.to_numpy(), index=ids, name="well")
    if "well_id" in index.columns and index["well_id"].notna().all():
        return pd.Series(index["well_id"].astype(str).to_numpy(), index=ids, name="well")
    return None


def well_probabilities(predictions: pd.DataFrame, wells: pd.Series,
                       classes: Sequence[str]) -> pd.DataFrame:
    """Average the site probabilities of each (model, fold, well).

    Parameters
    ----------
    predictions : pd.DataFrame
        ``predictions.parquet``: ``sample_id, fold, model, true_label, proba_{class}...``.
    wells : pd.Series
        Well of each sample id (:func:`well_keys`).
    classes : sequence of str
        The run's classes (``proba_{class}`` columns).

    Returns
    -------
    pd.DataFrame
        ``model, fold, well, true_label, n_sites, proba_{class}...``, one row per well and
        fold, probabilities the mean over the well's sites (rows sum to 1).

    Raises
    ------
    WellLabelError
        A well's sites have different true labels.
    KeyError
        A predicted sample has no well.
    """
    cols = [f"proba_{c}" for c in classes]
    missing = sorted(set(predictions["sample_id"].astype(str)) - set(wells.index))
    if missing:
        raise KeyError(f"predicted samples {missing[:5]} have no well in the dataset index")
    frame = predictions.assign(well=predictions["sample_id"].astype(str).map(wells))
    keys = ["model", "fold", "well"]
    mixed = frame.groupby(keys)["true_label"].nunique()
    mixed = mixed[mixed > 1]
    if len(mixed):
        well = mixed.index[0][2]
        labels = sorted(frame.loc[frame.well == well, "true_label"].astype(str).unique())
        raise WellLabelError(f"well {well} holds sites with labels {labels} ({len(mixed)} such "
                             f"wells); well-level results need one label per well")
    grouped = frame.groupby(keys, sort=True)
    out = grouped[cols].mean()
    out.insert(0, "n_sites", grouped.size())
    out.insert(0, "true_label", grouped["true_label"].first())
    return out.reset_index()


def well_metrics(wells_proba: pd.DataFrame, classes: Sequence[str], top_k: int) -> dict[str, Any]:
    """Per-fold and summary metrics of each model on the well-averaged probabilities.

    Returns
    -------
    dict
        ``{model: {"folds": [{"fold", "n_wells", metrics...}], "summary": {metric: {mean, std}}}}``;
        ``summary`` covers the cross-validation folds (``fold >= 0``) only.
    """
    cols = [f"proba_{c}" for c in classes]
    out: dict[str, Any] = {}
    for model, rows in wells_proba.groupby("model", sort=True):
        folds = []
        for fold, part in rows.groupby("fold", sort=True):
            metrics = compute_metrics(part["true_label"].astype(str).to_numpy(),
                                      part[cols].to_numpy(float), classes, top_k)
            folds.append({"fold": int(fold), "n_wells": len(part), **metrics})
        cv = [f for f in folds if f["fold"] >= 0]
        summary = {k: v for k, v in model_summary(cv).items() if k in METRIC_NAMES}
        out[str(model)] = {"folds": folds, "summary": summary}
    return out


def well_results(out: str | Path, index: pd.DataFrame, classes: Sequence[str],
                 top_k: int) -> dict[str, Any]:
    """The ``wells`` entry of metrics.json; writes ``well_predictions.parquet`` beside it.

    Parameters
    ----------
    out : str or Path
        Results folder holding ``predictions.parquet``.
    index : pd.DataFrame
        The dataset's index (plate and well of each sample).
    classes : sequence of str
        The run's classes.
    top_k : int
        ``k`` of top-k accuracy.

    Returns
    -------
    dict
        ``{"available": True, "n_wells", "sites_per_well": {median, min, max},
        "wells_split_across_folds", "models": ...}`` (a well whose sites fall in several test
        folds is scored once per fold, and counted in ``wells_split_across_folds``),
        or ``{"available": False, "reason": ...}`` when the layout knows no wells.
    """
    wells = well_keys(index)
    if wells is None:
        return {"available": False,
                "reason": "the dataset's layout names no plate and well for its images"}
    predictions = pd.read_parquet(Path(out) / "predictions.parquet")
    table = well_probabilities(predictions, wells, classes)
    write_parquet(table, Path(out) / WELL_PREDICTIONS)
    sites = wells.value_counts()
    cv = table[table.fold >= 0]
    split = int((cv.groupby(["model", "well"]).size() > 1).groupby("model").sum().max())
    if split:
        logger.warning("%d wells have sites in more than one test fold (folds are not grouped by "
                       "well or plate); each part is scored as its own well", split)
    return {"available": True, "n_wells": int(wells.nunique()),
            "sites_per_well": {"median": float(np.median(sites)), "min": int(sites.min()),
                               "max": int(sites.max())},
            "wells_split_across_folds": split,
            "aggregation": "mean of the sites' class probabilities",
            "models": well_metrics(table, classes, top_k)}
