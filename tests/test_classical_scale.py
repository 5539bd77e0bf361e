"""Many classes: the one-vs-rest linear SVM switch and XGBoost's bounded settings."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.svm import LinearSVC

from cellcompare.classical import make_classifier
from cellcompare.classical.models import EarlyStoppingXGB, build_model
from cellcompare.classical.scale import (
    MANY_CLASSES,
    MAX_TREES,
    OvRLinearSVM,
    bounded_xgb_params,
    svm_kernel,
)


def _blobs(n_classes: int, per_class: int, n_features: int = 8, seed: int = 0, spread: float = 0.3):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(n_classes, n_features)) * 3
    y = np.repeat(np.arange(n_classes), per_class)
    return centres[y] + spread * rng.normal(size=(len(y), n_features)), y


@pytest.mark.parametrize("n_classes, n_rows, expected", [
    (MANY_CLASSES + 1, 100, "ovr_linear"), (MANY_CLASSES, 100, "rbf"),
    (MANY_CLASSES, 20001, "nystroem"), (1139, 125_510, "ovr_linear")])
def test_svm_kernel_switch(n_classes, n_rows, expected):
    assert svm_kernel(n_classes, n_rows) == expected


def test_ovr_matches_linearsvc_objective():
    """Per class, the joint L-BFGS solves LinearSVC's squared-hinge primal (same weights)."""
    X, y = _blobs(3, 40, n_features=5, spread=2.0)
    ours = OvRLinearSVM(C=0.1, validation_fraction=0.0, max_iter=2000, tol=1e-8).fit(X, y)
    # a large intercept_scaling makes liblinear's penalty on the intercept negligible
    ref = LinearSVC(C=0.1, dual=False, tol=1e-10, intercept_scaling=1000.0, max_iter=10000).fit(X, y)
    np.testing.assert_allclose(ours.coef_[:-1].T, ref.coef_, atol=2e-3)
    np.testing.assert_allclose(ours.coef_[-1], ref.intercept_, atol=2e-2)
    assert ours.temperature_ == 1.0 and "validation_fraction is 0" in ours.notes_[0]


def test_ovr_many_classes_separates_and_calibrates():
    X, y = _blobs(60, 6)
    model = OvRLinearSVM(C=1.0, random_state=0).fit(X, y)
    proba = model.predict_proba(X)
    assert proba.shape == (360, 60)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-9)
    np.testing.assert_array_equal(model.classes_[proba.argmax(axis=1)], model.predict(X))
    assert (model.predict(X) == y).mean() > 0.95
    assert model.notes_ == [] and 0.0 < model.temperature_ < 100.0
    again = OvRLinearSVM(C=1.0, random_state=0).fit(X, y)
    np.testing.assert_array_equal(again.predict_proba(X), proba)  # same seed, same numbers


def test_ovr_class_weight_moves_the_boundary():
    X, y = _blobs(3, 30, spread=3.0, seed=1)
    plain = OvRLinearSVM(C=0.1, validation_fraction=0).fit(X, y)
    heavy = OvRLinearSVM(C=0.1, validation_fraction=0, class_weight={0: 20.0}).fit(X, y)
    assert (heavy.predict(X) == 0).sum() > (plain.predict(X) == 0).sum()


def _table(X: np.ndarray, y: np.ndarray) -> tuple[pd.DataFrame, np.ndarray]:
    table = pd.DataFrame(X, columns=[f"Cells_F_{i}" for i in range(X.shape[1])])
    table.insert(0, "Metadata_sample_id", [f"s{i}" for i in range(len(y))])
    return table, np.array([f"siRNA-{c:04d}" for c in y])


def test_table_classifier_svm_switches_above_the_class_threshold():
    X, y = _blobs(MANY_CLASSES + 5, 1)  # one image per class: no calibration possible
    table, labels = _table(X, y)
    est = make_classifier("svm", corr_threshold=None, C=0.1).fit(table, labels)
    assert est.report_["final_estimator"] == "OvRLinearSVM"
    model = est.pipeline_.named_steps["model"]
    assert model.temperature_ == 1.0 and "smallest class has 1 row(s) of 55" in model.notes_[0]
    assert (est.predict(table) == labels).mean() == 1.0
    few = make_classifier("svm", corr_threshold=None)
    Xs, ys = _blobs(4, 5)
    small, small_labels = _table(Xs, ys)
    assert few.fit(small, small_labels).report_["final_estimator"] == "CalibratedSVM"


def test_bounded_xgb_params_cap_trees_and_keep_user_settings():
    params, note = bounded_xgb_params(1139, {"max_bin": 128, "n_estimators": 600})
    assert params["n_estimators"] == MAX_TREES // 1139 and params["n_estimators"] * 1139 <= MAX_TREES
    assert params["max_bin"] == 128 and params["colsample_bytree"] == 0.3
    assert "1139 trees per round" in note and "'max_bin'" not in note
    assert bounded_xgb_params(10, {"max_bin": 128}) == ({"max_bin": 128}, None)
    assert bounded_xgb_params(100_000, {})[0]["n_estimators"] == 10  # floor of rounds


def test_build_model_bounds_xgboost_for_many_classes():
    model = build_model("xgboost", large=False, n_jobs=1, random_state=0, n_classes=200)
    assert isinstance(model, EarlyStoppingXGB)
    assert model.n_estimators == MAX_TREES // 200 and model.max_bin == 64
    few = build_model("xgboost", large=False, n_jobs=1, random_state=0, n_classes=10, many_classes=5)
    assert few.n_estimators == 300 and few.colsample_bytree == 0.3  # 300 * 10 < MAX_TREES
    X, y = _blobs(60, 4, seed=2)
    fitted = build_model("xgboost", large=False, n_jobs=1, random_state=0, n_classes=60,
                         n_estimators=20).fit(X, y)
    assert fitted.booster_.get_booster().num_boosted_rounds() * 60 <= 20 * 60
    assert fitted.predict_proba(X).shape == (240, 60)
