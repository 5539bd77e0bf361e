"""Metrics against hand-computed values; statistics on known inputs; config validation."""

import math
from pathlib import Path

import numpy as np
import pytest

from cellcompare.comparison.config import ConfigError, load_config
from cellcompare.comparison.metrics import compute_metrics, top_k_accuracy
from cellcompare.comparison.stats import cohens_dz, compare_models, mcnemar, mean_std

CLASSES = ["a", "b", "c"]
DEMO_YAML = Path(__file__).resolve().parents[1] / "configs" / "demo.yaml"


def test_metrics_match_hand_computed_values():
    y = ["a", "a", "b", "c"]
    proba = np.array([[0.7, 0.2, 0.1], [0.2, 0.5, 0.3], [0.1, 0.8, 0.1], [0.3, 0.3, 0.4]])
    m = compute_metrics(y, proba, CLASSES, top_k=2)
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["top_k_accuracy"] == pytest.approx(0.75)  # row 2: a is third
    assert m["balanced_accuracy"] == pytest.approx((0.5 + 1 + 1) / 3)
    # F1: a = 2*1*0.5/1.5, b = 2*0.5*1/1.5, c = 1
    assert m["macro_f1"] == pytest.approx((2 / 3 + 2 / 3 + 1) / 3)
    assert m["log_loss"] == pytest.approx(-np.mean(np.log([0.7, 0.2, 0.8, 0.4])))
    assert m["per_class_recall"] == {"a": 0.5, "b": 1.0, "c": 1.0}
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]


def test_metrics_keep_absent_class_in_fixed_label_set():
    m = compute_metrics(["a", "b"], np.array([[0.9, 0.1, 0.0], [0.1, 0.9, 0.0]]), CLASSES)
    assert m["per_class_recall"]["c"] is None
    assert np.array(m["confusion_matrix"]).shape == (3, 3)
    assert m["macro_f1"] == pytest.approx(1.0)


def test_top_k_counts_rank():
    proba = np.array([[0.5, 0.3, 0.2], [0.5, 0.3, 0.2]])
    assert top_k_accuracy(np.array(["c", "b"]), proba, CLASSES, 1) == 0.0
    assert top_k_accuracy(np.array(["c", "b"]), proba, CLASSES, 2) == 0.5


def test_identical_models_are_not_distinguishable():
    scores = [0.8, 0.7, 0.9, 0.75, 0.85]
    correct = np.array([1, 0, 1, 1, 0, 1], dtype=bool)
    out = compare_models("svm", "xgboost", "accuracy", scores, scores, correct, correct)
    assert out["mean_difference"] == 0.0
    assert out["t_test"]["pvalue"] == 1.0 and out["mcnemar"]["pvalue"] == 1.0
    assert "not distinguishable" in out["verdict"]


def test_too_few_folds_is_not_distinguishable():
    out = compare_models("a", "b", "accuracy", [0.9, 0.95], [0.1, 0.2], [True], [False])
    assert "too few folds" in out["verdict"] and "not distinguishable" in out["verdict"]


def test_clear_difference_names_the_better_model():
    a = [0.90, 0.92, 0.91, 0.93, 0.90]
    b = [0.50, 0.55, 0.52, 0.51, 0.53]
    out = compare_models("svm", "cnn", "accuracy", a, b, [True] * 20, [False] * 20)
    assert out["t_test"]["pvalue"] < 0.001
    assert out["verdict"].startswith("svm is better than cnn")
    loss = compare_models("svm", "cnn", "log_loss", a, b, [True], [True], lower_is_better=True)
    assert loss["verdict"].startswith("cnn is better than svm")


def test_mcnemar_exact_binomial_and_chi2():
    exact = mcnemar([True] * 6 + [False] * 4, [False] * 6 + [False] * 4)  # b=6, c=0
    assert (exact["b"], exact["c"], exact["method"]) == (6, 0, "exact")
    assert exact["pvalue"] == pytest.approx(2 * 0.5 ** 6)
    big = mcnemar([True] * 30 + [False] * 10, [False] * 30 + [True] * 10)  # b=30, c=10
    assert big["method"] == "chi2"
    assert big["statistic"] == pytest.approx((20 - 1) ** 2 / 40)


def test_mean_std_and_effect_size():
    assert mean_std([1.0, 2.0, 3.0]) == {"mean": 2.0, "std": 1.0}
    assert cohens_dz([1.0, 2.0, 3.0]) == pytest.approx(2.0)
    assert math.isinf(cohens_dz([0.1, 0.1, 0.1]))


def test_demo_config_loads_and_validates():
    config = load_config(DEMO_YAML)
    assert [m.name for m in config.models] == ["svm", "xgboost", "resnet18", "smallcnn"]
    assert config.folds.group_column == "group"
    assert config.dataset.synth is not None and config.dataset.synth.plates == 3
    assert config.export_models == ("xgboost",)


def test_keys_a_file_leaves_out_take_the_defaults(tmp_path):
    path = tmp_path / "small.yaml"
    path.write_text("dataset: {path: data}\n")
    config = load_config(path)
    assert config.dataset.path == "data" and config.dataset.synth is None
    assert [m.name for m in config.models] == ["svm", "xgboost", "resnet18"]
    assert (config.top_k, config.folds.n_splits, config.export_models) == (3, 5, ())


@pytest.mark.parametrize("text, match", [
    ("models: [{name: randomforest}]", r"models\[0\].*'randomforest'.*valid names.*svm"),
    ("folds: {n_splits: 1}", "folds.n_splits"),
    ("folds: {nsplits: 3}", r"bad.yaml: unknown key 'folds.nsplits'"),
    ("dataset: {path: x, synth: {clases: 2}}", r"unknown key 'dataset.synth.clases'"),
    ("features: {preset: minimal, colour: red}", r"unknown key 'features.colour'"),
    ("modells: [svm]", r"unknown key 'modells'"),
    ("dataset: {path: x, layout: zarr}", "dataset.layout"),
    ("top_k: 0", "top_k"),
    ("models: [svm, svm]", "appear twice"),
])
def test_bad_config_names_the_key_and_the_file(tmp_path, text, match):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match) as info:
        load_config(path)
    assert str(path) in str(info.value)


def test_constant_fold_differences_leave_the_t_test_undefined():
    # resnet18 at chance scores the same top-2 accuracy in every fold: t would be infinite, p = 0
    out = compare_models("svm", "resnet18", "top_k_accuracy", [1.0, 1.0, 1.0], [0.5, 0.5, 0.5],
                         [True] * 12, [False] * 12)
    assert out["t_test"]["pvalue"] is None
    assert out["differences"] == [0.5, 0.5, 0.5]
    assert "same in every fold" in out["verdict"] and "p = 0)" not in out["verdict"]
    assert "McNemar on the pooled predictions p = 0.000488" in out["verdict"]  # 2 * 0.5**12
