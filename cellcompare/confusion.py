"""Confusion counts as ``metrics.json`` stores them: dense for few classes, sparse for many.

A fold's ``confusion_matrix`` is written by ``comparison.metrics`` and read by ``reports``:

- up to :data:`DENSE_MAX_CLASSES` classes, the dense ``(n_classes, n_classes)`` list of lists
  (rows true, columns predicted, in the run's class order), as results folders always held;
- above, ``{"format": "sparse", "n_classes": n, "entries": [[true, predicted, count], ...]}``
  with one entry per nonzero cell (class indices, rows in (true, predicted) order), so the
  size grows with the fold's test rows instead of classes²: at RxRx1's 1,139 classes a dense
  matrix is 1.3 M numbers per fold, a fold of 1,139 test images has at most 1,139 entries.

:func:`confusion_counts` reads either form back as the dense matrix; every reader goes
through it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

__all__ = ["DENSE_MAX_CLASSES", "SPARSE", "ConfusionFormatError", "confusion_counts",
           "encode_confusion"]

#: Most classes whose confusion matrix is stored dense.
DENSE_MAX_CLASSES = 50
#: ``format`` of the sparse form.
SPARSE = "sparse"


class ConfusionFormatError(ValueError):
    """A stored confusion matrix has the wrong shape, format or class index."""


def encode_confusion(true_index: np.ndarray, pred_index: np.ndarray, n_classes: int, *,
                     dense_max: int = DENSE_MAX_CLASSES) -> list[list[int]] | dict[str, Any]:
    """The ``metrics.json`` form of the confusion counts of one fold.

    Parameters
    ----------
    true_index, pred_index : np.ndarray
        ``(n,)`` class indices (into the run's classes) of the true and predicted class.
    n_classes : int
        Number of classes of the run.
    dense_max : int
        Most classes stored dense.

    Returns
    -------
    list of lists or dict
        Dense counts (rows true) up to ``dense_max`` classes, else the sparse form of the
        module docstring.

    Examples
    --------
    >>> import numpy as np
    >>> from cellcompare.confusion import encode_confusion
    >>> encode_confusion(np.array([0, 1, 1]), np.array([0, 0, 1]), 2)
    [[1, 0], [1, 1]]
    >>> encode_confusion(np.array([0, 1, 1]), np.array([0, 0, 1]), 2, dense_max=1)
    {'format': 'sparse', 'n_classes': 2, 'entries': [[0, 0, 1], [1, 0, 1], [1, 1, 1]]}
    """
    true_index = np.asarray(true_index, dtype=np.int64)
    pred_index = np.asarray(pred_index, dtype=np.int64)
    if true_index.shape != pred_index.shape:
        raise ValueError(f"true and predicted indices differ in shape: {true_index.shape} vs "
                         f"{pred_index.shape}")
    for name, index in (("true", true_index), ("predicted", pred_index)):
        if len(index) and (index.min() < 0 or index.max() >= n_classes):
            raise ValueError(f"{name} class indices must lie in [0, {n_classes}); found "
                             f"{index.min()}..{index.max()}")
    cells, counts = np.unique(true_index * n_classes + pred_index, return_counts=True)
    if n_classes <= dense_max:
        dense = np.zeros(n_classes * n_classes, dtype=np.int64)
        dense[cells] = counts
        return dense.reshape(n_classes, n_classes).tolist()
    entries = np.column_stack([cells // n_classes, cells % n_classes, counts])
    return {"format": SPARSE, "n_classes": int(n_classes), "entries": entries.tolist()}


def confusion_counts(stored: Sequence[Sequence[float]] | Mapping[str, Any],
                     n_classes: int) -> np.ndarray:
    """The dense ``(n_classes, n_classes)`` counts of a stored confusion matrix (either form).

    Parameters
    ----------
    stored : list of lists or dict
        A fold's ``confusion_matrix`` from ``metrics.json``.
    n_classes : int
        ``len(metrics["classes"])``.

    Returns
    -------
    np.ndarray
        ``(n_classes, n_classes)`` int64 counts, rows true, columns predicted.

    Raises
    ------
    ConfusionFormatError
        The dense form has another shape, or the sparse form another ``n_classes``, an
        unknown ``format``, or an entry outside the classes or with a negative count.

    Examples
    --------
    >>> from cellcompare.confusion import confusion_counts
    >>> sparse = {"format": "sparse", "n_classes": 2, "entries": [[0, 0, 1], [1, 0, 1], [1, 1, 1]]}
    >>> confusion_counts(sparse, 2).tolist(), confusion_counts([[1, 0], [1, 1]], 2).tolist()
    ([[1, 0], [1, 1]], [[1, 0], [1, 1]])
    """
    if isinstance(stored, Mapping):
        if stored.get("format") != SPARSE:
            raise ConfusionFormatError(f"confusion_matrix has format {stored.get('format')!r}; "
                                       f"expected {SPARSE!r} or a list of lists")
        if stored.get("n_classes") != n_classes:
            raise ConfusionFormatError(f"confusion_matrix is for {stored.get('n_classes')} classes, "
                                       f"expected {n_classes}")
        entries = np.asarray(stored.get("entries") or np.zeros((0, 3)), dtype=np.int64)
        if entries.ndim != 2 or entries.shape[1] != 3:
            raise ConfusionFormatError(f"confusion_matrix entries have shape {entries.shape}; "
                                       f"expected (n, 3) [true, predicted, count] rows")
        inside = (entries[:, :2] >= 0) & (entries[:, :2] < n_classes)
        if not inside.all() or (entries[:, 2] < 0).any():
            bad = entries[~(inside.all(axis=1) & (entries[:, 2] >= 0))][0].tolist()
            raise ConfusionFormatError(f"confusion_matrix entry {bad} lies outside {n_classes} "
                                       f"classes or has a negative count")
        dense = np.zeros((n_classes, n_classes), dtype=np.int64)
        np.add.at(dense, (entries[:, 0], entries[:, 1]), entries[:, 2])
        return dense
    try:
        dense = np.asarray(stored, dtype=np.int64)
    except (TypeError, ValueError) as exc:
        raise ConfusionFormatError(f"confusion_matrix is neither equal-length rows of counts nor "
                                   f"the sparse form: {exc}") from exc
    if dense.shape != (n_classes, n_classes):
        raise ConfusionFormatError(f"confusion_matrix has shape {dense.shape}, expected "
                                   f"({n_classes}, {n_classes}) for {n_classes} classes")
    return dense
