"""Estimators of classical/: accuracy, importance, determinism, leakage, tuning, granularity."""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from sklearn.model_selection import StratifiedKFold
from sklearn.utils.estimator_checks import parametrize_with_checks
from threadpoolctl import threadpool_limits

import cellcompare.classical.estimator as estimator_module
from cellcompare import classical
from cellcompare.classical import TableClassifier, feature_importance, make_classifier
from cellcompare.classical.preprocess import TableCleaner
from cellcompare.config import UnknownKeyError

INFORMATIVE = "Cells_Texture_Contrast_ER_3_00_256"
CLASSES = ["ctrl", "drugA", "drugB"]


@pytest.fixture(autouse=True)
def _one_blas_thread():
    """Tiny fits: BLAS threads only contend (10x slower Platt scaling on a busy 2-core CI)."""
    with threadpool_limits(1):
        yield


def make_table(n_per_class=30, n_noise=6, seed=0, plate_offset=0.0, cells_per_image=1):
    """Rows whose class shifts INFORMATIVE only; noise features; plate p adds p * plate_offset."""
    rng = np.random.default_rng(seed)
    rows = []
    for ci, label in enumerate(CLASSES):
        for i in range(n_per_class):
            sample = f"{label}_{i}"
            plate = i % 3
            for cell in range(cells_per_image):
                feats = {INFORMATIVE: 3.0 * ci + rng.normal(0, 0.5) + plate * plate_offset}
                for j in range(n_noise):
                    feats[f"Nuclei_Intensity_Mean{j}_DNA"] = rng.normal() + plate * plate_offset
                rows.append({"Metadata_sample_id": sample, "Metadata_label": label,
                             "Metadata_group": f"P{plate}", "Metadata_ObjectNumber": cell + 1, **feats})
    table = pd.DataFrame(rows)
    return table, table.pop("Metadata_label").to_numpy()


@pytest.mark.parametrize("name", ["svm", "linear_svm", "xgboost"])
def test_accuracy_well_above_chance(name):
    X, y = make_table(seed=0)
    X_test, y_test = make_table(seed=1)
    params = {"n_estimators": 50} if name == "xgboost" else {}
    est = make_classifier(name, random_state=0, **params).fit(X, y)
    assert list(est.classes_) == CLASSES
    assert est.score(X_test, y_test) > 0.85  # chance is 1/3
    proba = est.predict_proba(X_test)
    assert proba.shape == (len(X_test), 3)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)


@pytest.mark.parametrize("name", ["svm", "xgboost"])
def test_informative_feature_ranked_first(name):
    X, y = make_table(seed=0)
    X_test, y_test = make_table(seed=1)
    params = {"n_estimators": 50} if name == "xgboost" else {}
    est = make_classifier(name, random_state=0, **params)
    table = feature_importance(est.fit(X, y), X_test, y_test)
    assert table.loc[0, "feature"] == INFORMATIVE
    assert table.loc[0, "family"] == "Texture"
    assert table.loc[0, "permutation"] > 0.3
    if name == "xgboost":
        assert table["gain"].idxmax() == 0
    else:
        assert table["gain"].isna().all()


def test_importance_without_permutation_gives_gain_and_never_predicts(monkeypatch):
    X, y = make_table(seed=0)
    X_test, y_test = make_table(seed=1)
    est = make_classifier("xgboost", random_state=0, n_estimators=50).fit(X, y)
    calls = []
    for target in (est, est.pipeline_):
        for method in ("predict", "predict_proba", "score"):
            if hasattr(target, method):
                monkeypatch.setattr(target, method,
                                    lambda *a, _m=method, **k: calls.append(_m))
    table = feature_importance(est, X_test, y_test, permutation=False)
    assert calls == []
    assert table["permutation"].isna().all()
    assert len(table) == len(est.feature_names_in_)
    assert table.loc[0, "feature"] == INFORMATIVE and table.loc[0, "gain"] > 0
    assert table["gain"].is_monotonic_decreasing


@pytest.mark.parametrize("name", ["svm", "xgboost"])
def test_same_seed_gives_identical_probabilities(name):
    X, y = make_table(seed=0)
    X_test, _ = make_table(seed=1)
    p1 = make_classifier(name, random_state=3, tune=True, tune_budget=2).fit(X, y).predict_proba(X_test)
    p2 = make_classifier(name, random_state=3, tune=True, tune_budget=2).fit(X, y).predict_proba(X_test)
    np.testing.assert_array_equal(p1, p2)


class SpyCleaner(TableCleaner):
    """Records the sample ids of every table it is fitted on (shared across clones)."""

    seen: list = []

    def fit(self, X, y=None):
        SpyCleaner.seen.append(set(X["Metadata_sample_id"]))
        return super().fit(X, y)


def test_pipelines_never_fit_on_test_rows(monkeypatch):
    monkeypatch.setattr(estimator_module, "TableCleaner", SpyCleaner)
    X, y = make_table(n_per_class=12, seed=0)
    for train, test in StratifiedKFold(2, shuffle=True, random_state=0).split(X, y):
        SpyCleaner.seen = []
        est = make_classifier("svm", tune=True, tune_budget=1, random_state=0)
        est.fit(X.iloc[train], y[train])
        est.predict_proba(X.iloc[test])
        test_ids = set(X["Metadata_sample_id"].iloc[test])
        # 1 candidate x 3 inner folds + the final fit, each on training rows only
        assert len(SpyCleaner.seen) == 4
        assert all(not (ids & test_ids) for ids in SpyCleaner.seen)
        assert SpyCleaner.seen[-1] == set(X["Metadata_sample_id"].iloc[train])


def test_tuning_reports_best_params_from_search_space():
    X, y = make_table(seed=0)
    est = make_classifier("xgboost", tune=True, tune_budget=3, random_state=0).fit(X, y)
    assert set(est.best_params_) == {"max_depth", "learning_rate", "n_estimators"}
    assert len(est.report_["tuning"]) == 3
    chosen = min(est.report_["tuning"], key=lambda r: r["mean_log_loss"])["params"]
    assert chosen == est.best_params_


def test_cell_granularity_averages_cells_per_image():
    X, y = make_table(n_per_class=10, cells_per_image=4, seed=0)
    X_test, y_test = make_table(n_per_class=5, cells_per_image=4, seed=1)
    est = make_classifier("xgboost", granularity="cell", tune=True, tune_budget=1,
                          n_estimators=30, random_state=0).fit(X, y)
    ids, proba = est.predict_image_proba(X_test)
    assert len(ids) == 15 and proba.shape == (15, 3)
    cells = est.predict_proba(X_test)
    first = X_test["Metadata_sample_id"] == ids[0]
    np.testing.assert_allclose(proba[0], cells[first.to_numpy()].mean(axis=0))
    truth = np.array([i.split("_")[0] for i in ids])
    assert (est.classes_[proba.argmax(axis=1)] == truth).mean() > 0.85


def test_large_table_svm_uses_kernel_approximation():
    X, y = make_table(seed=0)
    X_test, y_test = make_table(seed=1)
    est = make_classifier("svm", large_table_rows=50, n_components=40).fit(X, y)
    assert est.pipeline_.named_steps["model"].kernel == "nystroem"
    assert est.score(X_test, y_test) > 0.85


def test_config_from_dict_builds_estimator(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: xgboost\nnormalize: plate_robust\nparams: {max_depth: 3}\n")
    est = classical.ClassicalConfig.from_yaml(path).build()
    assert (est.model, est.normalize, est.model_params) == ("xgboost", "plate_robust", {"max_depth": 3})
    with pytest.raises(UnknownKeyError, match="unknown key 'nme'"):
        classical.ClassicalConfig.from_dict({"nme": "svm"})


def test_xgboost_stops_early_and_picks_cpu_without_cuda(monkeypatch):
    from cellcompare.classical import models
    monkeypatch.setattr(models, "cuda_available", lambda: False)
    X, y = make_table(seed=0, n_noise=2)
    est = make_classifier("xgboost", n_estimators=400, early_stopping_rounds=5, random_state=0).fit(X, y)
    model = est.pipeline_.named_steps["model"]
    assert model.device_ == "cpu"
    assert model.best_iteration_ < 200  # validation log-loss stops improving long before 400


@pytest.mark.parametrize("name", ["svm", "xgboost"])
def test_two_classes_use_the_binary_path(name):
    X, y = make_table(seed=0)
    keep = y != "drugB"
    X_test, y_test = make_table(seed=1)
    keep_test = y_test != "drugB"
    params = {"n_estimators": 50} if name == "xgboost" else {}
    est = make_classifier(name, random_state=0, **params).fit(X[keep], y[keep])
    assert list(est.classes_) == ["ctrl", "drugA"]
    proba = est.predict_proba(X_test[keep_test])
    assert proba.shape == (int(keep_test.sum()), 2)
    assert est.score(X_test[keep_test], y_test[keep_test]) > 0.85


def test_nan_and_inf_features_are_imputed_not_refused():
    """Backs the ``allow_nan`` tag: NaN becomes the training median, inf the training extreme."""
    X, y = make_table(seed=0)
    X_test, y_test = make_table(seed=1)
    X.loc[::7, INFORMATIVE] = np.nan
    X.loc[3, "Nuclei_Intensity_Mean0_DNA"] = np.inf
    X_test.loc[0, INFORMATIVE] = np.nan
    X_test.loc[1, INFORMATIVE] = -np.inf
    est = make_classifier("svm", random_state=0).fit(X, y)
    assert est.report_["cleaning"]["n_imputed"] == 13 and est.report_["cleaning"]["n_inf_clipped"] == 1
    proba = est.predict_proba(X_test)
    assert np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    assert est.predict(X_test.iloc[[1]])[0] == "ctrl"  # -inf -> the training minimum: lowest class
    assert est.score(X_test.iloc[2:], y_test[2:]) > 0.8  # 0.875 without NaN; chance is 1/3


class ArrayTableClassifier(TableClassifier):
    """``TableClassifier`` as scikit-learn's checks see it: a 2-D array is a table of ``x0, x1, ...``.

    The checks feed bare arrays; everything else (DataFrames, sparse matrices, 1-D arrays, None)
    reaches ``TableClassifier`` untouched, so the checks judge its own validation. ``predict``
    and ``score`` go through ``predict_proba``.
    """

    @staticmethod
    def _table(X):
        if isinstance(X, pd.DataFrame) or sp.issparse(X) or np.ndim(X) != 2:
            return X
        values = np.asarray(X)
        return pd.DataFrame(values, columns=[f"x{j}" for j in range(values.shape[1])])

    def fit(self, X, y, groups=None):
        return super().fit(self._table(X), y, groups)

    def predict_proba(self, X):
        return super().predict_proba(self._table(X))


#: Checks that TableClassifier fails by design, or through a defect outside estimator.py (named
#: DEFECT). ``xfail_strict``: a check that starts passing must be taken off this list.
SKLEARN_EXPECTED_FAILURES = {
    "check_classifier_data_not_an_array":
        "a DataFrame with integer column names is refused (NonNumericFeatureError naming "
        "them): feature tables are named by CellProfiler feature names",
    "check_n_features_in_after_fitting":
        "a table with other columns is refused by name (FeatureMismatchError lists missing and "
        "extra columns), not with sklearn's 'X has n features' wording",
    "check_estimators_empty_data_messages":
        "an empty table is refused by EmptyFeatureTableError in table words "
        "('12 rows and 0 feature columns'), not sklearn's 'shape=(n, 0)' wording",
    "check_dtype_object":
        "object-dtype feature columns are refused by NonNumericFeatureError, by design",
    "check_estimator_sparse_tag":
        "only DataFrames are tables: sparse input is refused by a TypeError naming its type",
    "check_estimator_sparse_array":
        "only DataFrames are tables: sparse input is refused by a TypeError naming its type",
    "check_estimator_sparse_matrix":
        "only DataFrames are tables: sparse input is refused by a TypeError naming its type",
    "check_fit1d":
        "a 1-D array is not a table: TypeError ('must be a pandas DataFrame'), not ValueError",
    "check_fit2d_predict1d":
        "a 1-D array is not a table: TypeError ('must be a pandas DataFrame'), not ValueError",
}


@parametrize_with_checks(
    [ArrayTableClassifier(model="linear_svm", tune=False),
     ArrayTableClassifier(model="xgboost", tune=False, model_params={"n_estimators": 10})],
    expected_failed_checks=lambda est: SKLEARN_EXPECTED_FAILURES, xfail_strict=True)
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)
