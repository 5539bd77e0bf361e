"""Metrics against hand-computed values; statistics on known inputs; config validation."""

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cellcompare.comparison.config import ConfigError, load_config
from cellcompare.comparison.metrics import compute_metrics, top_k_accuracy
from cellcompare.comparison.stats import (
    cohens_dz,
    compare_models,
    mcnemar,
    mean_std,
    pairwise_matrix,
)
from cellcompare.comparison.uncertainty import (
    bootstrap_metrics,
    headline,
    uncertainty,
    well_units,
)

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
    assert [m.label for m in config.models] == ["svm", "xgboost", "resnet18", "resnet18_ssl", "svm_ssl",
                                                "smallcnn"]
    assert config.models[4].representation == "embeddings:ssl"
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


# --- bootstrap intervals, pairwise matrix, headline -------------------------------------------



def _outcomes(correct, top_k=None):
    correct = np.asarray(correct, dtype=bool)
    return {"correct": correct, "top_k": correct if top_k is None else np.asarray(top_k, bool)}


def test_bootstrap_point_estimates_equal_the_metrics():
    from sklearn.metrics import balanced_accuracy_score

    y = np.array([0, 0, 0, 1, 1, 2])
    pred = np.array([0, 1, 0, 1, 1, 0])
    out = bootstrap_metrics(y, {"m": _outcomes(pred == y, [1, 1, 1, 1, 1, 0])}, 3, n_boot=200)
    per = out["models"]["m"]
    assert per["accuracy"]["estimate"] == pytest.approx(4 / 6)
    assert per["top_k_accuracy"]["estimate"] == pytest.approx(5 / 6)
    assert per["balanced_accuracy"]["estimate"] == pytest.approx(balanced_accuracy_score(y, pred))
    for ci in per.values():
        assert ci["low"] <= ci["estimate"] <= ci["high"]


def test_bootstrap_interval_matches_the_binomial_standard_error():
    n, p = 400, 0.8
    correct = np.arange(n) < p * n
    out = bootstrap_metrics(np.zeros(n, int), {"m": _outcomes(correct)}, 1, n_boot=4000, seed=1)
    ci = out["models"]["m"]["accuracy"]
    half = 1.96 * math.sqrt(p * (1 - p) / n)           # 0.039
    assert ci["low"] == pytest.approx(p - half, abs=0.008)
    assert ci["high"] == pytest.approx(p + half, abs=0.008)


def test_resampling_wells_widens_the_interval_when_sites_agree():
    # 4 sites per well share their outcome: 50 wells carry the evidence of 50 images, not 200
    wells = np.repeat(np.arange(50), 4)
    correct = np.repeat(np.arange(50) % 4 != 0, 4)
    y = np.zeros(200, int)
    by_image = bootstrap_metrics(y, {"m": _outcomes(correct)}, 1, n_boot=3000, seed=0)
    by_well = bootstrap_metrics(y, {"m": _outcomes(correct)}, 1, units=wells, n_boot=3000, seed=0)
    width = {k: v["models"]["m"]["accuracy"]["high"] - v["models"]["m"]["accuracy"]["low"]
             for k, v in (("image", by_image), ("well", by_well))}
    assert by_well["n_units"] == 50 and by_image["n_units"] == 200
    assert 1.6 < width["well"] / width["image"] < 2.4          # sqrt(4) = 2


def test_bootstrap_is_seeded_and_paired():
    y = np.zeros(30, int)
    a = _outcomes(np.arange(30) % 3 != 0)
    kwargs = {"n_boot": 500, "pairs": [("a", "b")]}
    one = bootstrap_metrics(y, {"a": a, "b": a}, 1, seed=3, **kwargs)
    assert one == bootstrap_metrics(y, {"a": a, "b": a}, 1, seed=3, **kwargs)
    b = _outcomes(np.arange(30) % 2 == 0)
    other = [bootstrap_metrics(y, {"a": a, "b": b}, 1, seed=s, **kwargs)["differences"]
             for s in (3, 4, 5)]
    assert other[1] != other[0]          # the seed drives the draws: seed 4 gives other intervals
    assert other[2] != other[0]          # than seed 3, and so does seed 5
    # the same resamples for both models: identical models differ by exactly 0 in every resample
    assert one["differences"][0]["accuracy"] == {"estimate": 0.0, "low": 0.0, "high": 0.0}


def test_bootstrap_rejects_misaligned_inputs():
    with pytest.raises(ValueError, match=r"outcomes\['m'\]\['correct'\] has 2 entries for 3 images"):
        bootstrap_metrics([0, 0, 0], {"m": _outcomes([1, 0])}, 1)
    with pytest.raises(ValueError, match="units has 2 entries for 3 images"):
        bootstrap_metrics([0, 0, 0], {"m": _outcomes([1, 0, 1])}, 1, units=["w1", "w2"])


def test_pairwise_matrix_is_antisymmetric_with_symmetric_pvalues():
    comps = [compare_models("a", "b", "accuracy", [0.9, 0.8, 0.85], [0.7, 0.75, 0.6],
                            [True, True, False], [False, True, False]),
             compare_models("a", "b", "log_loss", [0.1, 0.2, 0.3], [0.4, 0.5, 0.9],
                            [True], [True])]
    out = pairwise_matrix(comps, ["b", "a", "c"], "accuracy")
    assert out["difference"][1][0] == pytest.approx(np.mean([0.2, 0.05, 0.25]))
    assert out["difference"][0][1] == pytest.approx(-out["difference"][1][0])
    assert out["t_pvalue"][0][1] == out["t_pvalue"][1][0] == comps[0]["t_test"]["pvalue"]
    assert out["mcnemar_pvalue"][0][1] == comps[0]["mcnemar"]["pvalue"]
    assert out["difference"][0][0] is None and out["difference"][2][0] is None


def _models(scores: dict[str, tuple[str, float]]) -> dict:
    return {m: {"kind": kind, "summary": {"accuracy": {"mean": s, "std": 0.01}}}
            for m, (kind, s) in scores.items()}


def _frame(correct: dict[str, np.ndarray], n_folds: int = 3) -> pd.DataFrame:
    rows = []
    for model, right in correct.items():
        for i, ok in enumerate(right):
            rows.append({"sample_id": f"s{i}", "fold": i % n_folds, "model": model,
                         "true_label": "a", "proba_a": 0.9 if ok else 0.1,
                         "proba_b": 0.1 if ok else 0.9})
    return pd.DataFrame(rows)


def test_headline_compares_best_classical_with_best_deep():
    n = 60
    correct = {"svm": np.arange(n) % 10 != 0, "xgboost": np.arange(n) % 5 != 0,
               "resnet18": np.arange(n) % 2 == 0, "smallcnn": np.arange(n) % 3 == 0}
    models = _models({m: ("deep" if m in ("resnet18", "smallcnn") else "classical",
                          float(c.mean())) for m, c in correct.items()})
    preds = _frame(correct)
    out = uncertainty(models, [], preds, ["a", "b"], 1, seed=0)
    h = out["headline"]
    assert (h["model_a"]["model"], h["model_b"]["model"]) == ("svm", "resnet18")
    assert h["model_a"]["estimate"] == pytest.approx(0.9)
    assert h["model_b"]["estimate"] == pytest.approx(0.5)
    assert h["difference"]["estimate"] == pytest.approx(0.4)
    assert h["difference"]["low"] > 0 and h["distinguishable"] is True
    assert h["sentence"].startswith("svm (classical) separates the classes better than resnet18 (deep)")
    assert out["bootstrap"]["models"]["xgboost"]["accuracy"]["estimate"] == pytest.approx(0.8)
    assert out["pairwise"]["models"] == list(correct)


def test_headline_says_indistinguishable_when_the_interval_includes_zero():
    right = np.arange(40) % 2 == 0
    correct = {"svm": right, "resnet18": right[::-1].copy()}
    models = _models({"svm": ("classical", 0.5), "resnet18": ("deep", 0.5)})
    h = uncertainty(models, [], _frame(correct), ["a", "b"], 1, seed=0)["headline"]
    assert h["difference"]["low"] < 0 < h["difference"]["high"]
    assert h["distinguishable"] is False
    assert "cannot be told apart" in h["sentence"] and "includes 0" in h["sentence"]


def test_uncertainty_resamples_wells_and_ignores_the_hold_out():
    correct = {"svm": np.ones(8, bool), "resnet18": np.arange(8) < 4}
    preds = _frame(correct)
    holdout = preds.iloc[:2].assign(fold=-1, sample_id="held")
    preds = pd.concat([preds, holdout], ignore_index=True)
    index = pd.DataFrame({"sample_id": [f"s{i}" for i in range(8)] + ["held"],
                          "well_id": [f"w{i // 2}" for i in range(8)] + ["w9"]})
    models = _models({"svm": ("classical", 1.0), "resnet18": ("deep", 0.5)})
    out = uncertainty(models, [], preds, ["a", "b"], 1, seed=0, **well_units(index))
    assert out["bootstrap"]["unit"] == "well" and out["bootstrap"]["n_units"] == 4
    assert out["bootstrap"]["n_images"] == 8
    assert "from 4 wells" in out["headline"]["sentence"]
    assert well_units(index.drop(columns="well_id")) == {"units": None, "unit": "image"}


def test_headline_with_one_model_has_nothing_to_compare():
    boot = bootstrap_metrics([0, 0], {"svm": _outcomes([1, 0])}, 1, n_boot=10)
    h = headline(_models({"svm": ("classical", 0.5)}), [], boot)
    assert h["model_b"] is None and h["difference"] is None
    assert h["sentence"] == "Only one model (svm) was run, so there is nothing to compare."
