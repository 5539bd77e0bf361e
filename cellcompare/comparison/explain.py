"""Why each model decides: result files for the report, written from the fitted fold models.

The report never trains, so what it shows about a model's reasoning is written here, while the
fold's model is in memory:

- ``explain/{model}__fold{k}.gradcam.npz`` (deep models): a few correctly and wrongly
  classified test images (cell crops for ``granularity: cell``) per class, each with its
  Grad-CAM map (:func:`deep.explain.grad_cam`);
- ``explain/{model}.features.npz`` (classical models with feature importance): the top features
  and, for each, crops of the cells with the lowest and highest values;
- :func:`training_record`: the per-epoch training history and tuning trials of a fitted
  adapter, stored in the unit's record (and so in metrics.json).

Every array file holds plain arrays (no pickles): ``images``/``crops`` are uint8 ``(N, C, S, S)``
display intensities (crops: the dtype-scaled [0, 1] intensities x 255; Grad-CAM inputs: each
channel over its 99.9th percentile in the file), string columns are unicode arrays.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cellcompare import atomic

__all__ = ["EXPLAIN_DIR", "EXAMPLES_PER_CLASS", "select_examples", "training_record",
           "write_gradcam_examples", "top_features", "example_columns", "write_feature_examples"]

log = logging.getLogger(__name__)

EXPLAIN_DIR = "explain"
#: Correct and wrong test images kept per true class and fold (the report shows a few of them).
EXAMPLES_PER_CLASS = 1
#: Features with example cells per classical model, and cells shown at each end.
TOP_FEATURES = 4
CELLS_PER_END = 3
DEFAULT_CROP = 64
#: Cell-table columns the example crops read: where each cell is, its image and label.
EXAMPLE_METADATA = ("Metadata_sample_id", "Metadata_Location_Center_X", "Metadata_Location_Center_Y",
                    "Metadata_label")
#: The nucleus size the crop side follows (:func:`deep.crops.auto_crop_size`).
DIAMETER = "Nuclei_AreaShape_EquivalentDiameter"


def _to_uint8(values: np.ndarray) -> np.ndarray:
    return (np.clip(np.asarray(values, dtype=np.float32), 0.0, 1.0) * 255).round().astype(np.uint8)


def _save_npz(path: Path, **arrays: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic.atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez_compressed(fh, **arrays)
    return path


def training_record(adapter: Any) -> dict[str, Any]:
    """Per-epoch history and tuning trials of a fitted adapter, for the unit's record.

    Returns
    -------
    dict
        ``history`` (deep: one record per epoch with ``train_loss``, ``train_accuracy`` and, with
        an inner validation split, ``val_loss``, ``val_accuracy``) and ``tuning_trials`` (deep:
        ``lr``, ``batch_size``, ``val_loss``...; classical: ``params``, ``mean_log_loss``,
        ``seconds``); empty lists when the model keeps none.
    """
    classifier = getattr(adapter, "classifier_", None)
    if classifier is not None:
        return {"history": list(getattr(classifier, "history_", None) or []),
                "tuning_trials": list(getattr(classifier, "tuning_trials_", None) or [])}
    estimator = getattr(adapter, "estimator_", None)
    report = getattr(estimator, "report_", None) or {}
    record = {"history": [], "tuning_trials": list(report.get("tuning") or [])}
    if report and hasattr(estimator, "pipeline_"):  # a fitted CellClassifier
        record["fitted"] = fitted_summary(estimator)
    return record


def fitted_summary(estimator: Any) -> dict[str, Any]:
    """What a fitted ``classical.CellClassifier`` ran: its final estimator, rows, features kept
    and, where the model has them, optimiser iterations (``n_iter_``) or boosted trees (rounds
    x classes), with XGBoost's row and column sampling. The cost models of
    ``benchmarks/scale_bench.py`` read these fields.
    """
    model = estimator.pipeline_.named_steps["model"]
    summary: dict[str, Any] = {"estimator": type(model).__name__,
                               "train_rows": int(estimator.report_["n_train_rows"]),
                               "features": len(estimator.pipeline_.named_steps["select"].columns_),
                               "classes": len(estimator.classes_)}
    if hasattr(model, "n_iter_"):
        summary["iterations"] = int(np.max(model.n_iter_))
    booster = getattr(model, "booster_", None)
    if booster is not None:
        rounds = int(booster.get_booster().num_boosted_rounds())
        summary.update(rounds=rounds, trees=rounds * (len(estimator.classes_) if len(estimator.classes_) > 2 else 1),
                       subsample=float(model.subsample), colsample=float(model.colsample_bytree))
    return summary


def select_examples(y_true: Sequence[str], y_pred: Sequence[str], confidence: Sequence[float],
                    classes: Sequence[str], *, per_class: int = EXAMPLES_PER_CLASS) -> np.ndarray:
    """Indices of the most confident correct and the most confident wrong images of each class.

    Parameters
    ----------
    y_true, y_pred : sequence of str
        ``(n,)`` true and predicted labels.
    confidence : sequence of float
        ``(n,)`` probability of the predicted class.
    classes : sequence of str
        The classes, in the order the examples are returned.
    per_class : int
        At most this many correct and this many wrong images per true class.

    Returns
    -------
    np.ndarray
        Indices, grouped by class (correct ones first); ties keep the input order.
    """
    y_true, y_pred = np.asarray(y_true, dtype=str), np.asarray(y_pred, dtype=str)
    order = np.argsort(-np.asarray(confidence, dtype=float), kind="stable")
    chosen: list[int] = []
    for cls in classes:
        mine = order[y_true[order] == str(cls)]
        right = mine[y_pred[mine] == str(cls)][:per_class]
        wrong = mine[y_pred[mine] != str(cls)][:per_class]
        chosen.extend(int(i) for i in (*right, *wrong))
    return np.asarray(chosen, dtype=int)


def _model_inputs(adapter: Any, test: Any, proba: np.ndarray):
    """What the fitted deep adapter classified: ``(inputs, ids, y_true, proba)``.

    Image granularity: the test images and their probabilities. Cell granularity: every test
    cell crop as the model read it, with the probabilities the adapter kept from its last
    ``predict_proba`` (``cell_proba_``), each crop carrying its unit's label and id.
    """
    if getattr(adapter, "granularity", "image") != "cell":
        return adapter.images(test), np.asarray(test.sample_ids, dtype=str), np.asarray(test.y, dtype=str), proba
    kept = getattr(adapter, "cell_proba_", None)
    if kept is None:
        return None
    units, inputs, cell_proba = kept
    units = np.asarray(units, dtype=str)
    return inputs, units, test.labels_of(units), np.asarray(cell_proba)


def _display(images: np.ndarray) -> np.ndarray:
    """uint8 display intensities of a stack ``(N, C, S, S)``: each channel over its 99.9 %ile.

    Model inputs may be scaled beyond [0, 1] (per-plate normalisation of crops); the report
    stretches each image for display anyway, so only relative intensities are kept.
    """
    images = np.asarray(images, dtype=np.float32)
    top = np.percentile(images, 99.9, axis=(0, 2, 3)).reshape(1, -1, 1, 1)
    return _to_uint8(images / np.where(top > 0, top, 1.0))


def write_gradcam_examples(out: Path, label: str, fold: int, adapter: Any, test: Any,
                           proba: np.ndarray, classes: Sequence[str], *,
                           per_class: int = EXAMPLES_PER_CLASS) -> Path | None:
    """Grad-CAM maps of a fitted deep adapter on a few test images (or cell crops) per class.

    Parameters
    ----------
    out : Path
        The results directory.
    label, fold : str, int
        The unit (file ``explain/{label}__fold{fold}.gradcam.npz``).
    adapter : comparison.adapters.DeepModel
        Fitted on the fold's training images (``classifier_``); with ``granularity: cell`` the
        examples are single-cell crops, chosen by the crop's own prediction.
    test : comparison.adapters.FoldData
        The fold's test images.
    proba : np.ndarray
        ``(n_test, n_classes)`` the adapter's probabilities in ``classes`` order.
    classes : sequence of str
        The run's classes.

    Returns
    -------
    Path or None
        The written file; ``None`` for an adapter without a torch classifier (or cell
        probabilities).
    """
    import torch

    from cellcompare.deep.data import ImageTensorDataset
    from cellcompare.deep.explain import grad_cam

    classifier = getattr(adapter, "classifier_", None)
    found = None if classifier is None else _model_inputs(adapter, test, proba)
    if found is None:
        return None
    inputs, ids, y_true, proba = found
    classes = [str(c) for c in classes]
    pred = np.asarray(classes)[np.argmax(proba, axis=1)]
    chosen = select_examples(y_true, pred, np.max(proba, axis=1), classes, per_class=per_class)
    if not len(chosen):
        return None
    data = ImageTensorDataset(inputs, None, mean=classifier.channel_mean_, std=classifier.channel_std_,
                        image_size=classifier.config.image_size, indices=chosen)
    batch = torch.stack([data[i][0] for i in range(len(data))])
    own = {str(c): i for i, c in enumerate(classifier.classes_)}
    targets = torch.as_tensor([own.get(p, 0) for p in pred[chosen]])
    cams = grad_cam(classifier.model_, batch, targets).numpy()
    raw = batch * data.std + data.mean   # the resized input before normalisation
    names = [str(c) for c in test.dataset.channel_names] if test.dataset is not None else []
    index = adapter.channel_index
    channels = names if index is None else [names[i] for i in index if i < len(names)]
    path = Path(out) / EXPLAIN_DIR / f"{label}__fold{fold}.gradcam.npz"
    return _save_npz(path, images=_display(raw.numpy()), cams=_to_uint8(cams),
                     sample_id=ids[chosen], true_label=y_true[chosen], predicted=pred[chosen].astype(str),
                     confidence=np.max(proba, axis=1)[chosen].astype(np.float32),
                     channels=np.asarray(channels, dtype=str),
                     granularity=np.asarray(getattr(adapter, "granularity", "image")))


def top_features(importance: pd.DataFrame, model: str, columns: Sequence[str], *,
                 n: int = TOP_FEATURES) -> list[str]:
    """The ``n`` per-cell features with the largest mean gain of ``model`` over folds.

    An image-level feature (the median of its cells, or ``{feature}__mean``) counts for the
    per-cell feature it summarises; features with zero gain or absent from ``columns`` are
    left out.
    """
    rows = importance[importance["model"] == model]
    if rows.empty or "gain" not in rows:
        return []
    base = rows["feature"].astype(str).str.replace(r"__mean$", "", regex=True)
    gain = rows.assign(base=base).groupby("base")["gain"].mean()
    gain = gain[(gain > 0) & gain.index.isin(list(columns))]
    return list(gain.sort_values(ascending=False, kind="stable").index[:n])


def _crop_size(cells: pd.DataFrame) -> int:
    if DIAMETER not in cells:
        return DEFAULT_CROP
    from cellcompare.deep.crops import auto_crop_size

    return auto_crop_size(cells[DIAMETER].to_numpy(dtype=float))


def example_columns(importance: pd.DataFrame, names: Sequence[str], *,
                    n_features: int = TOP_FEATURES) -> list[str]:
    """The cell-table columns :func:`write_feature_examples` reads, so only those are loaded.

    Parameters
    ----------
    importance : pd.DataFrame
        ``feature_importance.csv``.
    names : sequence of str
        Columns of the per-cell table (its schema; nothing is read).
    n_features : int
        Features per model, as in :func:`write_feature_examples`.

    Returns
    -------
    list of str
        :data:`EXAMPLE_METADATA` and :data:`DIAMETER` where present, then every model's top
        features; empty when no model has one (nothing to read).
    """
    features = [c for c in names if not c.startswith("Metadata_")]
    models = dict.fromkeys(importance["model"].astype(str))
    tops = dict.fromkeys(f for m in models for f in top_features(importance, m, features, n=n_features))
    if not tops:
        return []
    return [c for c in (*EXAMPLE_METADATA, DIAMETER) if c in names and c not in tops] + list(tops)


def write_feature_examples(out: Path, importance: pd.DataFrame, cells: pd.DataFrame, dataset: Any,
                           *, n_features: int = TOP_FEATURES,
                           per_end: int = CELLS_PER_END) -> list[Path]:
    """For each model in ``importance``: crops of the cells at both ends of its top features.

    Parameters
    ----------
    out : Path
        The results directory (files ``explain/{model}.features.npz``).
    importance : pd.DataFrame
        ``feature_importance.csv`` (model, fold, feature, family, gain, ...).
    cells : pd.DataFrame
        The per-cell feature table with ``Metadata_sample_id`` and
        ``Metadata_Location_Center_X/Y``.
    dataset : datasets dataset
        Where the pixels come from (``get(sample_id).float_image``).
    n_features, per_end : int
        Features per model, and cells at the low and at the high end of each.

    Returns
    -------
    list of Path
        The written files (none when the cell table has no locations).
    """
    from cellcompare.deep.crops import cut_crops

    needed = set(EXAMPLE_METADATA[:3])
    if cells is None or not needed <= set(cells.columns) or dataset is None:
        log.info("no example cells: the cell table has no locations or there is no dataset")
        return []
    columns = [c for c in cells.columns if not c.startswith("Metadata_")]
    size = _crop_size(cells)
    pixels: dict[str, np.ndarray] = {}
    written = []
    for model in dict.fromkeys(importance["model"].astype(str)):
        features = top_features(importance, model, columns, n=n_features)
        if not features:
            continue
        crops, rows = [], []
        for feature in features:
            values = cells[feature].astype(float)
            ranked = values[np.isfinite(values)].sort_values(kind="stable")
            ends = (("low", ranked.index[:per_end]), ("high", ranked.index[::-1][:per_end]))
            for end, index in ends:
                for i in index:
                    cell = cells.loc[i]
                    sid = str(cell["Metadata_sample_id"])
                    if sid not in pixels:
                        pixels[sid] = np.asarray(dataset.get(sid).float_image, dtype=np.float32)
                    center = [[float(cell["Metadata_Location_Center_Y"]),
                               float(cell["Metadata_Location_Center_X"])]]
                    crops.append(cut_crops(pixels[sid], np.asarray(center), size)[0])
                    rows.append((feature, end, float(values[i]), sid, str(cell.get("Metadata_label", ""))))
        feature, end, value, sid, label = map(np.asarray, zip(*rows))
        path = Path(out) / EXPLAIN_DIR / f"{model}.features.npz"
        written.append(_save_npz(path, crops=_to_uint8(np.stack(crops)), feature=feature.astype(str),
                                 end=end.astype(str), value=value.astype(float),
                                 sample_id=sid.astype(str), label=label.astype(str),
                                 channels=np.asarray([str(c) for c in dataset.channel_names], dtype=str)))
    return written
