"""classical/ preprocessing, persistence, top-k and input errors on tiny synthetic tables."""

import json
import logging

import numpy as np
import pandas as pd
import pytest
from test_classical_estimators import CLASSES, INFORMATIVE, make_table
from threadpoolctl import threadpool_limits

from cellcompare import classical
from cellcompare.classical import load_model, make_classifier, save_model
from cellcompare.classical.preprocess import FeatureSelector, TableCleaner, TableScaler
from cellcompare.proba import top_k


@pytest.fixture(autouse=True)
def _one_blas_thread():
    """Tiny fits: BLAS threads only contend (10x slower Platt scaling on a busy 2-core CI)."""
    with threadpool_limits(1):
        yield


def test_cleaner_drops_nan_and_constant_columns_and_reports(caplog):
    X = pd.DataFrame({"Metadata_group": ["a"] * 4, "A_B_nan": [np.nan] * 4, "A_B_const": [2.0] * 4,
                      "A_B_x": [1.0, np.inf, np.nan, 3.0], "A_B_y": [0.0, 1.0, 2.0, -np.inf]})
    with caplog.at_level(logging.INFO, logger="cellcompare.classical.preprocess"):
        cleaner = TableCleaner().fit(X)
    r = cleaner.report_
    assert (r["n_all_nan"], r["n_constant"], r["n_kept"]) == (1, 1, 2)
    assert (r["n_inf_clipped"], r["n_imputed"]) == (2, 1)
    assert r["dropped_all_nan"] == ["A_B_nan"] and r["dropped_constant"] == ["A_B_const"]
    assert "dropped 1 all-NaN and 1 constant" in caplog.text
    out = cleaner.transform(X)
    np.testing.assert_array_equal(out["A_B_x"], [1.0, 3.0, 2.0, 3.0])  # inf->max, NaN->median
    np.testing.assert_array_equal(out["A_B_y"], [0.0, 1.0, 2.0, 0.0])
    assert list(out.columns) == ["A_B_x", "A_B_y", "Metadata_group"]


def test_selector_drops_correlated_and_keeps_top_mutual_information():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 50)
    X = pd.DataFrame({"F_a": y + rng.normal(0, 0.1, 100), "F_b": rng.normal(size=100),
                      "F_c": rng.normal(size=100)})
    X["F_a_copy"] = 2 * X["F_a"] + 1
    sel = FeatureSelector(corr_threshold=0.9).fit(X, y)
    assert sel.columns_ == ["F_a", "F_b", "F_c"] and sel.report_["n_correlated"] == 1
    assert FeatureSelector(corr_threshold=0.9, mi_top_k=1).fit(X, y).columns_ == ["F_a"]


def test_plate_robust_normalisation_removes_plate_offset():
    X, y = make_table(seed=0, plate_offset=10.0)
    cols = classical.feature_columns(X)
    raw = X.groupby("Metadata_group")[cols].median()
    assert np.ptp(raw[INFORMATIVE]) > 15
    scaled = pd.DataFrame(TableScaler("plate_robust").fit(X).transform(X), columns=cols)
    per_plate = scaled.groupby(X["Metadata_group"].to_numpy()).median()
    np.testing.assert_allclose(per_plate.to_numpy(), 0.0, atol=1e-9)


def test_plate_robust_model_generalises_to_unseen_shifted_plate():
    X, y = make_table(seed=0, plate_offset=5.0)
    X_test, y_test = make_table(seed=1, plate_offset=5.0)
    X_test["Metadata_group"] = "new_" + X_test["Metadata_group"]
    X_test[classical.feature_columns(X_test)] += 40.0  # new plates far from all training plates
    robust = make_classifier("svm", normalize="plate_robust").fit(X, y)
    standard = make_classifier("svm", normalize="standard").fit(X, y)
    assert robust.score(X_test, y_test) > 0.85
    assert standard.score(X_test, y_test) < 0.5


def test_persistence_round_trip_and_sidecar(tmp_path):
    X, y = make_table(seed=0)
    X_test, _ = make_table(seed=1)
    est = make_classifier("xgboost", n_estimators=30, random_state=0).fit(X, y)
    save_model(est, tmp_path / "m", train_table=X)
    loaded = load_model(tmp_path / "m", expect_columns=X_test)
    np.testing.assert_array_equal(loaded.predict_proba(X_test), est.predict_proba(X_test))
    side = json.loads((tmp_path / "m" / "model.json").read_text())
    assert side["classes"] == CLASSES and side["feature_names"][0] == INFORMATIVE
    assert len(side["train_table_sha256"]) == 64 and side["versions"]["xgboost"]
    assert side["best_params"]["n_estimators"] == 30


def test_load_model_refuses_mismatched_columns(tmp_path):
    X, y = make_table(seed=0)
    save_model(make_classifier("linear_svm").fit(X, y), tmp_path / "m")
    cols = [c for c in X.columns if c != INFORMATIVE] + ["Cells_AreaShape_Area"]
    expected = f"1 missing \\[{INFORMATIVE}\\], 1 extra \\[Cells_AreaShape_Area\\]"
    with pytest.raises(classical.FeatureMismatchError, match=expected) as info:
        load_model(tmp_path / "m", expect_columns=cols)
    assert info.value.missing == [INFORMATIVE] and info.value.extra == ["Cells_AreaShape_Area"]


def test_predict_refuses_missing_feature():
    X, y = make_table(seed=0)
    est = make_classifier("linear_svm").fit(X, y)
    with pytest.raises(classical.FeatureMismatchError, match="prediction table"):
        est.predict_proba(X.drop(columns=[INFORMATIVE]))


def test_top_k_orders_classes_by_probability():
    labels, probs = top_k(np.array([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]]), ["a", "b", "c"], k=2)
    assert labels.tolist() == [["b", "c"], ["a", "c"]]
    np.testing.assert_array_equal(probs, [[0.7, 0.2], [0.5, 0.3]])
    assert top_k(np.ones((1, 3)) / 3, ["a", "b", "c"], k=5)[0].tolist() == [["a", "b", "c"]]


def test_single_class_training_data_raises():
    X, y = make_table(seed=0)
    with pytest.raises(classical.SingleClassError, match="1 class"):
        make_classifier("svm").fit(X, np.full(len(y), "ctrl"))


def test_class_smaller_than_inner_folds_raises():
    X, y = make_table(seed=0)
    y = y.copy()
    y[:2] = "rare"
    with pytest.raises(classical.TooFewMembersError, match=r"\{'rare': 2\}.*fewer than 5"):
        make_classifier("xgboost", tune=True, inner_folds=5).fit(X, y)


def test_nan_only_table_raises():
    X, y = make_table(seed=0)
    cols = classical.feature_columns(X)
    X[cols] = np.nan
    with pytest.raises(classical.EmptyFeatureTableError, match=f"all {len(cols)} feature columns are NaN"):
        make_classifier("svm").fit(X, y)


def test_non_numeric_feature_column_raises():
    X, y = make_table(seed=0)
    X["Cells_Label_Text"] = "abc"
    with pytest.raises(classical.NonNumericFeatureError, match="Cells_Label_Text"):
        make_classifier("svm").fit(X, y)


def test_unseen_label_at_score_time_raises():
    X, y = make_table(seed=0)
    est = make_classifier("linear_svm").fit(X, y)
    y_bad = y.copy()
    y_bad[0] = "drugZ"
    with pytest.raises(classical.UnseenLabelError, match="drugZ"):
        est.score(X, y_bad)
    with pytest.raises(classical.UnseenLabelError):
        classical.feature_importance(est, X, y_bad)


def test_plate_robust_without_group_column_raises():
    X, y = make_table(seed=0)
    with pytest.raises(classical.MissingMetadataError, match="Metadata_group"):
        make_classifier("svm", normalize="plate_robust").fit(X.drop(columns="Metadata_group"), y)


def test_unknown_model_name_raises():
    with pytest.raises(ValueError, match="unknown classifier 'rf'"):
        make_classifier("rf")


def test_cell_model_counts_images_not_cells_per_class():
    X, y = make_table(n_per_class=8, cells_per_image=5, seed=0)
    y = y.copy()
    y[:10] = "rare"  # 10 cells, but only 2 images
    with pytest.raises(classical.TooFewMembersError, match=r"\{'rare': 2\}"):
        make_classifier("svm", granularity="cell", tune=True, inner_folds=3).fit(X, y)


def test_column_names_that_are_not_strings_are_refused_by_name():
    from cellcompare.classical.errors import NonNumericFeatureError
    from cellcompare.classical.tables import validate_features

    table = pd.DataFrame(np.ones((4, 3)), columns=[0, 1, "Nuclei_AreaShape_Area"])
    with pytest.raises(NonNumericFeatureError, match=r"2 column name\(s\) that are not strings: \[0, 1\]"):
        validate_features(table)
