"""Read a comparison results directory (docs/CONTRACTS.md) into one typed record.

Only ``metrics.json`` is required; every other file is optional and becomes ``None`` when it
is absent, so each report section can say plainly what is missing.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from cellcompare.confusion import ConfusionFormatError, confusion_counts

__all__ = ["ResultsError", "Results", "load_results", "lower_is_better"]

log = logging.getLogger(__name__)

REQUIRED_METRICS_KEYS = ("classes", "models")
FOLD_COLUMNS = ("sample_id", "label", "group", "fold")
IMPORTANCE_COLUMNS = ("model", "fold", "feature", "family", "gain", "permutation")


def lower_is_better(metric: str) -> bool:
    """True for metrics where a smaller value is better (``log_loss``, ``*_error``).

    Examples
    --------
    >>> from cellcompare.reports.load import lower_is_better
    >>> [lower_is_better(m) for m in ("log_loss", "calibration_error", "macro_f1")]
    [True, True, False]
    """
    return "loss" in metric or metric.endswith("_error")


class ResultsError(ValueError):
    """A results directory or one of its files does not match the contract."""


@dataclass(frozen=True)
class Results:
    """Everything the report reads from one results directory.

    Attributes
    ----------
    root : Path
        The results directory.
    metrics : dict
        Parsed ``metrics.json`` (the only required file).
    config : dict or None
        Parsed ``config.yaml``.
    folds : pd.DataFrame or None
        ``folds.csv`` (sample_id, label, group, fold).
    predictions : pd.DataFrame or None
        ``predictions.parquet`` (sample_id, fold, model, true_label, proba_{class}...).
    summary : pd.DataFrame or None
        ``summary.csv`` as written by the comparison runner.
    importance : pd.DataFrame or None
        ``feature_importance.csv`` (model, fold, feature, family, gain, permutation).
    dataset_summary : dict or None
        ``dataset_summary.json``.
    class_differences : dict or None
        ``class_differences.json`` (synthetic data only): ``{class: {description, params}}``.
    qc_files : tuple of Path
        ``features/qc/*.npz`` label images for segmentation overlays, sorted by name.
    explain_files : tuple of Path
        ``explain/*.npz`` written by ``comparison.explain`` (Grad-CAM examples of deep models,
        example cells of classical models' top features), sorted by name.
    """

    root: Path
    metrics: dict[str, Any]
    config: dict[str, Any] | None = None
    folds: pd.DataFrame | None = None
    predictions: pd.DataFrame | None = None
    summary: pd.DataFrame | None = None
    importance: pd.DataFrame | None = None
    dataset_summary: dict[str, Any] | None = None
    class_differences: dict[str, Any] | None = None
    qc_files: tuple[Path, ...] = field(default_factory=tuple)
    explain_files: tuple[Path, ...] = field(default_factory=tuple)

    @property
    def classes(self) -> list[str]:
        """Class names in the order of the confusion matrices."""
        return [str(c) for c in self.metrics["classes"]]

    @property
    def model_names(self) -> list[str]:
        """Model names in the order of ``metrics.json``."""
        return list(self.metrics["models"])

    @property
    def metric_names(self) -> list[str]:
        """Metric names reported per fold (``metric_names`` or the contract's default)."""
        default = ["accuracy", "top_k_accuracy", "balanced_accuracy", "macro_f1", "log_loss"]
        return list(self.metrics.get("metric_names") or default)

    def confusion_matrices(self, model: str) -> list[np.ndarray]:
        """Dense ``(n_classes, n_classes)`` counts of each fold of ``model`` that recorded one.

        Both stored forms (dense, and sparse above ``confusion.DENSE_MAX_CLASSES`` classes)
        are read by ``confusion.confusion_counts``.
        """
        n = len(self.classes)
        folds = self.metrics["models"][model].get("folds", [])
        return [confusion_counts(f["confusion_matrix"], n) for f in folds if f.get("confusion_matrix")]

    def fold_table(self) -> pd.DataFrame:
        """One row per (model, fold) with every scalar metric, time and memory."""
        rows = []
        for model, info in self.metrics["models"].items():
            for fold in info.get("folds", []):
                row = {k: v for k, v in fold.items() if np.isscalar(v) or v is None}
                rows.append({"model": model, **row})
        return pd.DataFrame(rows)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        with path.open(encoding="utf-8") as fh:
            data = json.load(fh)
    except json.JSONDecodeError as exc:
        raise ResultsError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ResultsError(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data


def _check_columns(frame: pd.DataFrame, path: Path, expected: tuple[str, ...]) -> pd.DataFrame:
    missing = [c for c in expected if c not in frame.columns]
    if missing:
        raise ResultsError(
            f"{path}: missing columns {missing}; expected {list(expected)}, "
            f"found {list(frame.columns)}"
        )
    return frame


def _optional(path: Path, reader):
    if not path.is_file():
        log.info("optional result file absent: %s", path)
        return None
    return reader(path)


def _check_metrics(metrics: dict[str, Any], path: Path) -> None:
    missing = [k for k in REQUIRED_METRICS_KEYS if k not in metrics]
    if missing:
        raise ResultsError(f"{path}: missing keys {missing}; found {sorted(metrics)}")
    n = len(metrics["classes"])
    for model, info in metrics["models"].items():
        for fold in info.get("folds", []):
            cm = fold.get("confusion_matrix")
            if cm is None:
                continue
            try:
                confusion_counts(cm, n)
            except ConfusionFormatError as exc:
                raise ResultsError(f"{path}: models.{model} fold {fold.get('fold')}: {exc}") from exc


def load_results(results_dir: str | Path) -> Results:
    """Read a results directory written by ``comparison.run``.

    Parameters
    ----------
    results_dir : str or Path
        Directory holding at least ``metrics.json``.

    Returns
    -------
    Results
        The parsed files; optional files that are absent are ``None``.

    Raises
    ------
    ResultsError
        When the directory or ``metrics.json`` is missing, or a file lacks contract columns.
    """
    root = Path(results_dir)
    metrics_path = root / "metrics.json"
    if not metrics_path.is_file():
        raise ResultsError(
            f"{root}: no metrics.json found; is this a comparison results directory?")
    metrics = _read_json(metrics_path)
    _check_metrics(metrics, metrics_path)

    def csv(expected):
        return lambda p: _check_columns(pd.read_csv(p), p, expected)

    qc_dir = root / "features" / "qc"
    explain_dir = root / "explain"
    return Results(
        root=root,
        metrics=metrics,
        config=_optional(root / "config.yaml", lambda p: yaml.safe_load(p.read_text()) or {}),
        folds=_optional(root / "folds.csv", csv(FOLD_COLUMNS)),
        predictions=_optional(root / "predictions.parquet", pd.read_parquet),
        summary=_optional(root / "summary.csv", pd.read_csv),
        importance=_optional(root / "feature_importance.csv", csv(IMPORTANCE_COLUMNS)),
        dataset_summary=_optional(root / "dataset_summary.json", _read_json),
        class_differences=_optional(root / "class_differences.json", _read_json),
        qc_files=tuple(sorted(qc_dir.glob("*.npz"))) if qc_dir.is_dir() else (),
        explain_files=tuple(sorted(explain_dir.glob("*.npz"))) if explain_dir.is_dir() else (),
    )
