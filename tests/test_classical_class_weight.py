"""class_weight for the classical estimators: the minority class stops being ignored."""

import numpy as np
import pandas as pd
import pytest

from cellcompare.classical import make_classifier
from cellcompare.classical.config import ClassicalConfig
from cellcompare.classical.errors import UnseenLabelError
from cellcompare.comparison.results import metric_order


def _imbalanced(n_major=190, n_minor=10, shift=1.6, seed=0):
    """Two overlapping Gaussian classes, 5 % minority: unweighted models favour the majority."""
    rng = np.random.default_rng(seed)
    X = np.vstack([rng.normal(0, 1, (n_major, 3)), rng.normal(0, 1, (n_minor, 3)) + [shift, shift, 0]])
    y = np.array(["neg"] * n_major + ["pos"] * n_minor)
    return pd.DataFrame(X, columns=["Cells_A", "Cells_B", "Cells_C"]), y


def _minority_recall(model, **params):
    X, y = _imbalanced()
    Xt, yt = _imbalanced(seed=1)
    est = make_classifier(model, corr_threshold=None, random_state=0, **params).fit(X, y)
    return float((est.predict(Xt)[yt == "pos"] == "pos").mean())


@pytest.mark.parametrize("model", ["svm", "linear_svm", "xgboost"])
def test_balanced_weights_raise_minority_recall(model):
    plain = _minority_recall(model)
    balanced = _minority_recall(model, class_weight="balanced")
    assert balanced >= 0.6 and balanced >= plain + 0.3, (plain, balanced)


def test_explicit_weights_by_label_equal_balanced_for_this_ratio():
    X, y = _imbalanced()
    explicit = make_classifier("svm", corr_threshold=None, class_weight={"pos": 19.0}).fit(X, y)
    balanced = make_classifier("svm", corr_threshold=None, class_weight="balanced").fit(X, y)
    # balanced weights are 200 / (2 * 190) and 200 / (2 * 10): ratio 19, the same SVM problem up to C
    assert (explicit.predict(X) == "pos").sum() > 5 and (balanced.predict(X) == "pos").sum() > 5


def test_weights_for_an_unknown_label_are_refused():
    X, y = _imbalanced()
    with pytest.raises(UnseenLabelError, match="'mitotic'"):
        make_classifier("xgboost", class_weight={"mitotic": 3.0}).fit(X, y)


def test_config_carries_class_weight():
    est = ClassicalConfig.from_dict({"name": "linear_svm", "class_weight": "balanced"}).build()
    assert est.class_weight == "balanced"


def test_balanced_accuracy_leads_when_classes_differ_more_than_3x():
    assert metric_order({"a": 31, "b": 10})[0] == "balanced_accuracy"
    assert metric_order({"a": 30, "b": 10})[0] == "accuracy"
