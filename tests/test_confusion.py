"""Confusion counts in metrics.json: dense for few classes, nonzero cells above, one reader."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix

from cellcompare.comparison.metrics import compute_metrics
from cellcompare.confusion import (
    DENSE_MAX_CLASSES,
    ConfusionFormatError,
    confusion_counts,
    encode_confusion,
)


def _labels(n_classes: int, n_rows: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    true = rng.integers(0, n_classes, n_rows)
    pred = np.where(rng.random(n_rows) < 0.6, true, rng.integers(0, n_classes, n_rows))
    return true, pred


@pytest.mark.parametrize("n_classes", [2, DENSE_MAX_CLASSES, DENSE_MAX_CLASSES + 1, 1139])
def test_both_forms_read_back_as_sklearns_matrix(n_classes):
    true, pred = _labels(n_classes, 700)
    stored = json.loads(json.dumps(encode_confusion(true, pred, n_classes)))  # through metrics.json
    expected = confusion_matrix(true, pred, labels=np.arange(n_classes))
    np.testing.assert_array_equal(confusion_counts(stored, n_classes), expected)
    assert isinstance(stored, list) == (n_classes <= DENSE_MAX_CLASSES)


def test_sparse_entries_are_the_nonzero_cells_in_order():
    stored = encode_confusion(np.array([2, 0, 2, 2, 1]), np.array([1, 0, 1, 2, 3]), 4, dense_max=3)
    assert stored == {"format": "sparse", "n_classes": 4,
                      "entries": [[0, 0, 1], [1, 3, 1], [2, 1, 2], [2, 2, 1]]}


def test_the_sparse_size_grows_with_rows_not_classes():
    true, pred = _labels(1139, 1139)
    sparse = len(json.dumps(encode_confusion(true, pred, 1139)))
    dense = len(json.dumps(encode_confusion(true, pred, 1139, dense_max=1139)))
    assert sparse <= 20 * 1139  # at most one [t, p, c] entry per test row
    assert dense > 3 * 1139 ** 2  # "0, " per cell
    wider = len(json.dumps(encode_confusion(true, pred, 5000)))
    assert abs(wider - sparse) < 0.1 * sparse  # 4.4x the classes, about the same bytes


def test_compute_metrics_writes_the_sparse_form_above_the_threshold():
    classes = [f"c{i:03d}" for i in range(DENSE_MAX_CLASSES + 10)]
    true_index, pred_index = _labels(len(classes), 300, seed=1)
    proba = np.full((300, len(classes)), 0.1)
    proba[np.arange(300), pred_index] = 1.0
    metrics = compute_metrics(np.asarray(classes)[true_index], proba, classes, top_k=3)
    assert metrics["confusion_matrix"]["format"] == "sparse"
    counts = confusion_counts(metrics["confusion_matrix"], len(classes))
    np.testing.assert_array_equal(counts, confusion_matrix(true_index, pred_index,
                                                           labels=np.arange(len(classes))))
    assert counts.trace() / 300 == pytest.approx(metrics["accuracy"])


def test_old_dense_results_of_many_classes_are_still_read():
    true, pred = _labels(60, 200)
    dense = confusion_matrix(true, pred, labels=np.arange(60)).tolist()  # an older metrics.json
    np.testing.assert_array_equal(confusion_counts(dense, 60), np.asarray(dense))


@pytest.mark.parametrize("stored, message", [
    ([[1, 0], [0, 1]], r"shape \(2, 2\), expected \(3, 3\)"),
    ([[1, 0, 0], [0, 1]], "neither equal-length rows"),
    ({"format": "coo", "n_classes": 3, "entries": []}, "format 'coo'"),
    ({"format": "sparse", "n_classes": 4, "entries": []}, "for 4 classes, expected 3"),
    ({"format": "sparse", "n_classes": 3, "entries": [[0, 3, 1]]}, r"entry \[0, 3, 1\] lies outside"),
    ({"format": "sparse", "n_classes": 3, "entries": [[0, 1, -2]]}, "negative count"),
    ({"format": "sparse", "n_classes": 3, "entries": [[0, 1]]}, r"shape \(1, 2\)"),
])
def test_a_malformed_matrix_is_named(stored, message):
    with pytest.raises(ConfusionFormatError, match=message):
        confusion_counts(stored, 3)


def test_an_empty_fold_has_an_empty_sparse_form():
    stored = encode_confusion(np.array([], dtype=int), np.array([], dtype=int), 80)
    assert stored["entries"] == []
    assert confusion_counts(stored, 80).sum() == 0
