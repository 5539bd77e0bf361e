"""Per-cell labels (the ``labels:`` section): a gate on one measured feature, or hand annotations.

``level: image`` (the default) keeps today's task: one label per image. ``level: cell`` makes the
cell the unit: every segmented cell gets a label from

- ``source: gate`` -- CellProfiler Analyst's "marker-positive" rule on one per-object feature,
  ``{feature: Nuclei_Intensity_MeanIntensity_Marker, threshold: otsu, above: mitotic,
  below: interphase}`` (``threshold`` may be a number), or
- ``source: annotations`` -- a CSV of hand-labelled points ``sample_id, x, y, label``, each matched
  to the segmented nucleus that contains it, else the nearest centroid within ``radius`` px.

**Leak guard.** The gate's channel is taken away from every model: every feature column naming
that channel is dropped from the cell table, and deep models' crops are cut without it.
``metrics.json`` ``labels.leak_guard`` records what was removed; the report shows it.

Cell tasks are folded by :func:`cell_index`: stratified by cell label, grouped by image (or by the
configured ``folds.group_column``), so one image's cells are never on both sides of a split.
``group_column: none`` allows plain stratified cell folds (e.g. a single image) with a warning.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cellcompare.comparison.cellids import CELL_COLUMN, cell_id
from cellcompare.comparison.task import CellTask
from cellcompare.config import ConfigError, build

__all__ = [
    "NO_GROUPS",
    "AnnotationsConfig",
    "GateConfig",
    "LabelError",
    "LabelsConfig",
    "apply_gate",
    "gate_channel",
    "guard_columns",
    "match_annotations",
    "prepare_cell_task",
]

log = logging.getLogger(__name__)

#: ``folds.group_column`` value of folds grouped by nothing: plain stratified folds of the
#: task's units (the cells of a single image); the inner folds of its models follow them.
NO_GROUPS = "none"
LEVELS = ("image", "cell")
SOURCES = ("gate", "annotations")


class LabelError(ValueError):
    """Per-cell labels cannot be made (unknown feature, unreadable annotations, one class only)."""


@dataclass(frozen=True)
class GateConfig:
    """``labels.gate``: cells above ``threshold`` on ``feature`` are ``above``, the rest ``below``."""

    feature: str = ""
    threshold: Any = "otsu"
    above: str = "positive"
    below: str = "negative"

    def __post_init__(self) -> None:
        if not self.feature:
            raise ConfigError("labels.gate.feature must name a per-object feature column, e.g. "
                              "Nuclei_Intensity_MeanIntensity_Marker")
        if self.threshold != "otsu" and (isinstance(self.threshold, bool)
                                         or not isinstance(self.threshold, (int, float))):
            raise ConfigError(f"labels.gate.threshold must be 'otsu' or a number, found {self.threshold!r}")
        if self.above == self.below:
            raise ConfigError(f"labels.gate.above and below must differ, both are {self.above!r}")


@dataclass(frozen=True)
class AnnotationsConfig:
    """``labels.annotations``: CSV ``sample_id, x, y, label``; ``radius`` for nearest matches."""

    path: str = ""
    radius: float = 10.0


@dataclass(frozen=True)
class LabelsConfig:
    """The ``labels:`` section: ``level`` (image|cell) and, for cells, the label ``source``."""

    level: str = "image"
    source: str | None = None
    gate: GateConfig | None = None
    annotations: AnnotationsConfig | None = None

    def __post_init__(self) -> None:
        if self.level not in LEVELS:
            raise ConfigError(f"labels.level must be one of {LEVELS}, found {self.level!r}")
        if self.level == "cell":
            if self.source not in SOURCES:
                raise ConfigError(f"labels.source must be one of {SOURCES} for level: cell, found {self.source!r}")
            if getattr(self, self.source) is None:
                raise ConfigError(f"labels.source: {self.source} needs a labels.{self.source} section")
        elif self.source is not None:
            raise ConfigError("labels.source applies to level: cell only; image labels come from the dataset")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, *, source: str | Path | None = None) -> LabelsConfig:
        """Build from the YAML mapping; unknown keys raise ``UnknownKeyError``."""
        data = dict(data or {})
        if isinstance(data.get("gate"), Mapping):
            data["gate"] = build(GateConfig, data["gate"], where="labels.gate", source=source)
        if isinstance(data.get("annotations"), Mapping):
            data["annotations"] = build(AnnotationsConfig, data["annotations"], where="labels.annotations",
                                        source=source)
        return build(cls, data, where="labels", source=source)


def apply_gate(values: np.ndarray, gate: GateConfig) -> tuple[np.ndarray, float]:
    """Labels of cells with these feature ``values`` and the threshold used.

    Parameters
    ----------
    values : np.ndarray
        One value per cell (NaN: unlabelled, returned as ``None``).
    gate : GateConfig
        ``threshold`` ``"otsu"`` (Otsu's threshold of the finite values) or a number.

    Returns
    -------
    labels : np.ndarray
        object ``(n,)``: ``gate.above`` where ``value > threshold``, else ``gate.below``.
    threshold : float

    Examples
    --------
    >>> apply_gate(np.array([0.1, 0.12, 0.9]), GateConfig("f", 0.5, "pos", "neg"))[0].tolist()
    ['neg', 'neg', 'pos']
    """
    from skimage.filters import threshold_otsu

    values = np.asarray(values, dtype=float)
    finite = np.isfinite(values)
    if not finite.any():
        raise LabelError(f"gate feature {gate.feature!r} has no finite value")
    threshold = float(threshold_otsu(values[finite])) if gate.threshold == "otsu" else float(gate.threshold)
    labels = np.where(values > threshold, gate.above, gate.below).astype(object)
    labels[~finite] = None
    return labels, threshold


def gate_channel(feature: str, channel_names: Any) -> str | None:
    """The channel a feature measures: the channel name among its ``_``-separated parts."""
    parts = feature.split("_")
    found = [c for c in channel_names if str(c) in parts]
    return str(found[0]) if found else None


def guard_columns(columns: Any, channel: str) -> list[str]:
    """Feature columns that involve ``channel`` (``classical.tables.channel_columns``)."""
    from cellcompare.classical.tables import channel_columns

    return channel_columns(columns, channel)


def match_annotations(points: pd.DataFrame, cells: pd.DataFrame, nuclei: Mapping[str, np.ndarray], *,
                      radius: float) -> tuple[pd.DataFrame, dict]:
    """Match annotated points to segmented cells.

    Parameters
    ----------
    points : pd.DataFrame
        ``sample_id, x, y, label`` (pixels, x = column).
    cells : pd.DataFrame
        Cell table rows (``Metadata_sample_id``, ``Metadata_ObjectNumber``, centre X/Y).
    nuclei : mapping
        ``{sample_id: nucleus label image}`` of the annotated images.
    radius : float
        A point outside every nucleus takes the nearest centroid within this distance.

    Returns
    -------
    matched : pd.DataFrame
        ``Metadata_sample_id, Metadata_ObjectNumber, label`` of cells matched exactly once.
    report : dict
        ``n_points``, ``matched``, ``unmatched`` (rows), ``doubly_matched`` (cells hit by two or
        more points; left out).
    """
    hits = []
    unmatched = []
    for row in points.itertuples(index=False):
        sid = str(row.sample_id)
        labels = nuclei.get(sid)
        mine = cells[cells["Metadata_sample_id"].astype(str) == sid]
        obj = 0
        if labels is not None:
            y, x = round(row.y), round(row.x)
            if 0 <= y < labels.shape[0] and 0 <= x < labels.shape[1]:
                obj = int(labels[y, x])
        if obj == 0 and len(mine):
            d = np.hypot(mine["Metadata_Location_Center_X"] - row.x, mine["Metadata_Location_Center_Y"] - row.y)
            if float(d.min()) <= radius:
                obj = int(mine["Metadata_ObjectNumber"].iloc[int(np.argmin(d.to_numpy()))])
        if obj == 0 or not (mine["Metadata_ObjectNumber"] == obj).any():
            unmatched.append({"sample_id": sid, "x": float(row.x), "y": float(row.y), "label": str(row.label)})
            continue
        hits.append((sid, obj, str(row.label)))
    frame = pd.DataFrame(hits, columns=["Metadata_sample_id", "Metadata_ObjectNumber", "label"])
    counts = frame.groupby(["Metadata_sample_id", "Metadata_ObjectNumber"]).size()
    double = counts[counts > 1]
    keep = ~frame.set_index(["Metadata_sample_id", "Metadata_ObjectNumber"]).index.isin(double.index)
    report = {"n_points": len(points), "matched": int(keep.sum()), "unmatched": unmatched,
              "doubly_matched": [{"sample_id": s, "object": int(o), "points": int(n)}
                                 for (s, o), n in double.items()]}
    return frame[keep].reset_index(drop=True), report


def _annotated(config: LabelsConfig, cells: pd.DataFrame, dataset: Any,
               segmentation: Any) -> tuple[pd.DataFrame, dict]:
    from cellcompare.deep.crops import segment_for_crops

    path = Path(config.annotations.path)
    if not path.is_file():
        raise LabelError(f"labels.annotations.path {path} does not exist")
    points = pd.read_csv(path, dtype={"sample_id": str})
    missing = [c for c in ("sample_id", "x", "y", "label") if c not in points.columns]
    if missing:
        raise LabelError(f"{path}: columns {missing} missing; expected sample_id, x, y, label")
    blank = points["label"].isna() | (points["label"].astype(str).str.strip() == "")
    if blank.any():  # rows of a `cellcompare fetch` CSV not filled in yet
        log.info("annotations %s: %d of %d rows have no label yet and are left out", path,
                 int(blank.sum()), len(points))
        points = points[~blank].reset_index(drop=True)
    points["label"] = points["label"].astype(str).str.strip()
    known = set(map(str, dataset.ids))
    unknown = sorted(set(points.sample_id) - known)
    if unknown:
        raise LabelError(f"{path}: sample ids {unknown[:5]} are not in the dataset")
    names = [str(c) for c in dataset.channel_names]
    nuclei = {sid: segment_for_crops(dataset.get(sid), segmentation, names,
                                     root=getattr(dataset, "root", None))[0]
              for sid in sorted(set(points.sample_id))}
    matched, report = match_annotations(points, cells, nuclei, radius=config.annotations.radius)
    if report["unmatched"] or report["doubly_matched"]:
        log.warning("annotations %s: %d of %d points matched no cell, %d cells were hit twice (left out)",
                    path, len(report["unmatched"]), report["n_points"], len(report["doubly_matched"]))
    table = cells.merge(matched, on=["Metadata_sample_id", "Metadata_ObjectNumber"], how="inner")
    return table, {"annotations": str(path), "unlabelled_rows": int(blank.sum()), **report}


def prepare_cell_task(config: Any, dataset: Any, cells: pd.DataFrame, *, segmentation: Any,
                      channel_index: tuple[int, ...] | None, out: Path | None = None) -> CellTask:
    """Label the cells, apply the leak guard and describe the folds of a ``level: cell`` run.

    Parameters
    ----------
    config : CompareConfig
        ``labels`` and ``folds`` are read.
    dataset : datasets.ImageDataset
        The images (index columns, channel names).
    cells : pd.DataFrame
        The run's per-cell feature table.
    segmentation : features.FeatureConfig
        The features' segmentation (annotations are matched to its nuclei).
    channel_index : tuple of int or None
        The channels the models may use (``dataset.channels``); the gate channel is removed.
    out : Path, optional
        Results directory: ``cells/labels.parquet`` (cell id, image, object, centre, label) and,
        for a gate, ``cells/gate.parquet`` (cell id, value, label) are written there for the report.
    """
    labels = config.labels
    names = [str(c) for c in dataset.channel_names]
    info: dict[str, Any] = {"level": "cell", "source": labels.source, "warnings": []}
    gate_values = None
    channel = None
    if labels.source == "gate":
        gate = labels.gate
        if gate.feature not in cells.columns:
            close = [c for c in cells.columns if gate.feature.split("_")[-1] in c][:5]
            raise LabelError(f"labels.gate.feature {gate.feature!r} is not a column of the cell table "
                             f"(features preset {config.features.get('preset')!r}); similar: {close}")
        values, threshold = apply_gate(cells[gate.feature].to_numpy(), gate)
        table = cells.assign(label=values)
        channel = gate_channel(gate.feature, names)
        info.update({"feature": gate.feature, "threshold": threshold,
                     "threshold_rule": gate.threshold, "above": gate.above, "below": gate.below})
        gate_values = pd.DataFrame({"cell_id": cell_id(cells["Metadata_sample_id"], cells["Metadata_ObjectNumber"]),
                                    "value": cells[gate.feature].to_numpy(dtype=float), "label": values})
    else:
        table, report = _annotated(labels, cells, dataset, segmentation)
        info.update(report)
    table = table[table["label"].notna()].reset_index(drop=True)
    counts = table["label"].value_counts().sort_index()
    if len(counts) < 2:
        raise LabelError(f"per-cell labels give one class only ({counts.to_dict()}); check the gate "
                         f"threshold or the annotations")
    info["class_counts"] = {str(k): int(v) for k, v in counts.items()}
    table = _guard(table, channel, names, info)
    if channel is not None:
        keep = [i for i in (channel_index or range(len(names))) if names[i] != channel]
        channel_index = tuple(keep)
    info["leak_guard"]["model_channels"] = [names[i] for i in (channel_index or range(len(names)))]
    table = table.copy()
    table.insert(0, CELL_COLUMN, cell_id(table["Metadata_sample_id"], table["Metadata_ObjectNumber"]))
    index, folds = cell_index(table, dataset, config.folds, info)
    if out is not None:
        _write(out, table, gate_values, info)
    return CellTask(index=index, classes=tuple(str(c) for c in counts.index), folds=folds,
                    cell_table=table.drop(columns=["label"]), channel_index=channel_index,
                    class_counts=info["class_counts"], info=info, gate_values=gate_values)


def _write(out: Path, table: pd.DataFrame, gate_values: pd.DataFrame | None, info: dict) -> None:
    from cellcompare.atomic import atomic_path

    folder = Path(out) / "cells"
    folder.mkdir(parents=True, exist_ok=True)
    cols = [CELL_COLUMN, "Metadata_sample_id", "Metadata_ObjectNumber",
            "Metadata_Location_Center_X", "Metadata_Location_Center_Y", "label"]
    frames = {"labels.parquet": table[[c for c in cols if c in table.columns]]}
    if gate_values is not None:
        frames["gate.parquet"] = gate_values.assign(label=gate_values["label"].astype(str))
    for name, frame in frames.items():
        with atomic_path(folder / name) as tmp:
            frame.to_parquet(tmp, index=False)
    info["files"] = sorted(f"cells/{name}" for name in frames)


def _guard(table: pd.DataFrame, channel: str | None, names: list[str], info: dict) -> pd.DataFrame:
    """Drop the gate channel's feature columns (all of them, not only the gate feature)."""
    if channel is None:
        info["leak_guard"] = {"channel": None, "dropped_columns": 0, "note": (
            "the gate feature names no channel (e.g. a shape feature); no channel was removed")}
        if info.get("source") == "gate":
            info["warnings"].append(info["leak_guard"]["note"])
        return table
    dropped = guard_columns(table.columns, channel)
    log.info("leak guard: the gate channel %s is removed from every model (%d feature columns, and "
             "its pixels in crops)", channel, len(dropped))
    info["leak_guard"] = {"channel": channel, "dropped_columns": len(dropped),
                          "note": f"gate channel {channel} removed from every model's input: "
                                  f"{len(dropped)} feature columns and its pixels in crops"}
    return table.drop(columns=dropped)


def cell_index(table: pd.DataFrame, dataset: Any, folds: Any, info: dict) -> tuple[pd.DataFrame, Any]:
    """The per-cell fold index and the folds config that groups it (by image by default)."""
    images = dataset.index.copy()
    images["sample_id"] = images["sample_id"].astype(str)
    index = pd.DataFrame({"sample_id": table[CELL_COLUMN].to_numpy(),
                          "label": table["label"].astype(str).to_numpy(),
                          "image": table["Metadata_sample_id"].astype(str).to_numpy()})
    extra = images.drop(columns=[c for c in ("label",) if c in images.columns])
    index = index.merge(extra.rename(columns={"sample_id": "image"}), on="image", how="left")
    column = folds.group_column
    if column is None:
        column = "image"
    elif column == NO_GROUPS:
        msg = ("folds.group_column: none -- cell folds are stratified but not grouped, so cells of "
               "one image sit in both training and test sets; neighbouring cells share staining and "
               "focus, and the scores are optimistic")
        log.warning(msg)
        info["warnings"].append(msg)
    info["fold_groups"] = column
    return index, replace(folds, group_column=column)
