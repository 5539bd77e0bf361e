"""Per-fold classification metrics from probabilities, with the class set fixed by the run."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    log_loss,
    recall_score,
)

from cellcompare.confusion import encode_confusion
from cellcompare.proba import top_k

__all__ = ["METRIC_NAMES", "LOWER_IS_BETTER", "top_k_accuracy", "compute_metrics"]

METRIC_NAMES = ["accuracy", "top_k_accuracy", "balanced_accuracy", "macro_f1", "log_loss"]
LOWER_IS_BETTER = {"log_loss"}


def top_k_accuracy(y_true: np.ndarray, proba: np.ndarray, classes: Sequence[str], k: int) -> float:
    """Fraction of rows whose true class is among the ``k`` most probable (ties: lower index first).

    Parameters
    ----------
    y_true : np.ndarray
        ``(n,)`` labels.
    proba : np.ndarray
        ``(n, n_classes)`` probabilities in ``classes`` order.
    classes : sequence of str
        Column order of ``proba``.
    k : int
        How many guesses count.
    """
    if len(y_true) == 0:
        return float("nan")
    labels, _ = top_k(proba, [str(c) for c in classes], k)
    truth = np.asarray([str(y) for y in y_true], dtype=object)
    return float(np.mean((labels == truth[:, None]).any(axis=1)))


def compute_metrics(y_true: Sequence[str], proba: np.ndarray, classes: Sequence[str],
                    top_k: int = 3) -> dict[str, Any]:
    """Accuracy, top-k, balanced accuracy, macro-F1, log-loss, per-class recall, confusion matrix.

    Parameters
    ----------
    y_true : sequence of str
        ``(n,)`` true labels (each one of ``classes``).
    proba : np.ndarray
        ``(n, n_classes)`` probabilities in ``classes`` order.
    classes : sequence of str
        The run's classes; every metric uses this fixed label set (a class absent from a fold's
        test set still has a row of zeros in the confusion matrix and a recall of NaN -> null).
    top_k : int
        ``k`` of top-k accuracy.

    Returns
    -------
    dict
        Keys of :data:`METRIC_NAMES` plus ``per_class_recall`` ``{class: float | None}`` and
        ``confusion_matrix`` (rows true, columns predicted, in ``classes`` order; dense up to
        ``confusion.DENSE_MAX_CLASSES`` classes, else its nonzero cells:
        ``confusion.encode_confusion``, read back with ``confusion.confusion_counts``).
    """
    classes = [str(c) for c in classes]
    y_true = np.asarray([str(y) for y in y_true])
    proba = np.asarray(proba, dtype=float)
    if proba.shape != (len(y_true), len(classes)):
        raise ValueError(f"proba has shape {proba.shape}; expected ({len(y_true)}, {len(classes)})")
    unknown = sorted(set(y_true) - set(classes))
    if unknown:
        raise ValueError(f"labels {unknown} are not among the classes {classes}")
    pred_index = np.argmax(proba, axis=1)
    y_pred = np.asarray(classes)[pred_index]
    position = {c: i for i, c in enumerate(classes)}
    true_index = np.array([position[y] for y in y_true], dtype=np.int64)
    present = [c for c in classes if c in set(y_true)]
    recall = recall_score(y_true, y_pred, labels=classes, average=None, zero_division=0.0)
    clipped = np.clip(proba, 1e-15, 1.0)
    clipped = clipped / clipped.sum(axis=1, keepdims=True)
    return {
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "top_k_accuracy": top_k_accuracy(y_true, proba, classes, top_k),
        "balanced_accuracy": float(balanced_accuracy_score(y_true, y_pred)),
        "macro_f1": float(f1_score(y_true, y_pred, labels=present, average="macro", zero_division=0.0)),
        "log_loss": float(log_loss(y_true, clipped, labels=classes)),
        "per_class_recall": {c: (float(r) if c in present else None) for c, r in zip(classes, recall)},
        "confusion_matrix": encode_confusion(true_index, pred_index, len(classes)),
    }
