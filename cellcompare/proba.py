"""Class-probability tables ``(n, n_classes)``: the most probable classes, and column order.

Used by every model family, by comparison's metrics and by serve, so that "top 3" and "the
column of class c" mean the same thing everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["ClassOrderError", "align_columns", "top_k"]


class ClassOrderError(ValueError):
    """A model's class is not among the classes its probabilities are mapped to."""


def top_k(proba: np.ndarray, classes: Sequence, k: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` most probable classes per row, and their probabilities.

    Parameters
    ----------
    proba : np.ndarray
        ``(n, n_classes)`` probabilities in ``classes`` order.
    classes : sequence
        Class labels, length ``n_classes``.
    k : int
        How many per row; clipped to ``n_classes``.

    Returns
    -------
    labels : np.ndarray
        ``(n, k)`` labels (object dtype), most probable first; ties keep the ``classes`` order.
    probabilities : np.ndarray
        ``(n, k)`` float, descending per row.

    Raises
    ------
    ValueError
        ``proba`` is not 2-D with one column per class, or ``k < 1``.

    Examples
    --------
    >>> labels, p = top_k(np.array([[0.1, 0.7, 0.2]]), ["a", "b", "c"], k=2)
    >>> labels.tolist(), p.tolist()
    ([['b', 'c']], [[0.7, 0.2]])
    """
    proba = np.asarray(proba, dtype=float)
    classes = np.asarray(list(classes), dtype=object)
    if proba.ndim != 2 or proba.shape[1] != len(classes):
        raise ValueError(f"proba has shape {proba.shape}; expected (n_rows, {len(classes)})")
    if int(k) < 1:
        raise ValueError(f"k must be >= 1, found {k}")
    k = min(int(k), len(classes))
    order = np.argsort(-proba, axis=1, kind="stable")[:, :k]
    return classes[order], np.take_along_axis(proba, order, axis=1)


def align_columns(proba: np.ndarray, model_classes: Sequence, classes: Sequence[str]) -> np.ndarray:
    """Reorder ``(n, len(model_classes))`` columns into ``classes`` order.

    A class of ``classes`` the model never saw gets a column of zeros.

    Raises
    ------
    ClassOrderError
        A model class is not one of ``classes``.

    Examples
    --------
    >>> align_columns(np.array([[0.9, 0.1]]), ["b", "a"], ["a", "b", "c"]).tolist()
    [[0.1, 0.9, 0.0]]
    """
    proba = np.asarray(proba, dtype=float)
    out = np.zeros((proba.shape[0], len(classes)), dtype=float)
    where = {str(c): j for j, c in enumerate(classes)}
    for j, c in enumerate(model_classes):
        if str(c) not in where:
            raise ClassOrderError(f"model class {c!r} is not one of the classes {list(classes)}")
        out[:, where[str(c)]] = proba[:, j]
    return out
