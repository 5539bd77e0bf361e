"""Class-probability tables ``(n, n_classes)``: the most probable classes, and column order.

Used by every model family, by comparison's metrics and by serve, so that "top 3" and "the
column of class c" mean the same thing everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["ClassOrderError", "align_columns", "mean_by", "top_k"]


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
    >>> import numpy as np
    >>> from cellcompare.proba import top_k
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
    >>> import numpy as np
    >>> from cellcompare.proba import align_columns
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


def mean_by(keys: Sequence, proba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean probability rows per key: an image's prediction from its cells' (the cell mean).

    The one rule by which every family turns per-cell probabilities into per-image ones
    (``TableClassifier.predict_image_proba``, ``DeepClassifier.predict_image_proba``); a key
    held by one row keeps that row exactly.

    Parameters
    ----------
    keys : sequence
        ``(n,)`` the key of each row (its image id; a cell id keeps cells apart).
    proba : np.ndarray
        ``(n, n_classes)`` probabilities.

    Returns
    -------
    ids : np.ndarray
        Sorted unique keys as str (object dtype).
    means : np.ndarray
        float64 ``(n_keys, n_classes)``, row ``i`` the mean of the rows of ``ids[i]`` (pandas'
        group mean, in ``proba``'s dtype).

    Examples
    --------
    >>> import numpy as np
    >>> from cellcompare.proba import mean_by
    >>> ids, means = mean_by(["b", "a", "b"], np.array([[1.0, 0.0], [0.2, 0.8], [0.5, 0.5]]))
    >>> ids.tolist(), means.tolist()
    (['a', 'b'], [[0.2, 0.8], [0.75, 0.25]])
    """
    keys = np.asarray([str(k) for k in keys], dtype=object)
    proba = np.asarray(proba)  # summed in its own dtype (float32 from xgboost and torch)
    if len(keys) != len(proba):
        raise ValueError(f"{len(keys)} keys for {len(proba)} probability rows")
    means = pd.DataFrame(proba).groupby(keys, sort=True).mean()
    return means.index.to_numpy(dtype=object), means.to_numpy(dtype=float)
