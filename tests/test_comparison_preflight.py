"""Preflight: class / fold / group counts checked against each model's needs before features."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pandas as pd
import pytest

from cellcompare.comparison import preflight as preflight_module
from cellcompare.comparison import runner
from cellcompare.comparison.config import CompareConfig, FoldsConfig, ModelSpec
from cellcompare.comparison.preflight import PreflightError, preflight, training_counts
from cellcompare.comparison.splits import make_folds


def _index(n_classes: int, per_plate: int, plates: int) -> pd.DataFrame:
    """``per_plate`` images of every class on each of ``plates`` plates."""
    rows = [(f"c{c:03d}", f"P{p}") for c in range(n_classes) for p in range(plates)
            for _ in range(per_plate)]
    frame = pd.DataFrame(rows, columns=["label", "group"])
    frame.insert(0, "sample_id", [f"s{i:06d}" for i in range(len(frame))])
    return frame


def _config(*models, n_splits=3, group="group") -> CompareConfig:
    specs = tuple(m if isinstance(m, ModelSpec) else ModelSpec(m, m) for m in models)
    return CompareConfig(models=specs, folds=FoldsConfig(n_splits=n_splits, group_column=group))


def _counted(calls: Counter, name: str, function):
    def counting(*args, **kwargs):
        calls[name] += 1
        return function(*args, **kwargs)
    return counting


def test_issue_case_fails_fast_with_a_short_message(monkeypatch):
    """100 classes x 3 plates with 5 plate-held-out folds: the issue's run, stopped in seconds:
    on the image counts alone, before any fold is made (let alone features or a model)."""
    index = _index(100, 1, 3)

    def no_folds(*args, **kwargs):
        raise AssertionError("folds made although the image counts already stop the run")

    monkeypatch.setattr(preflight_module, "make_folds", no_folds)
    with pytest.raises(PreflightError) as info:
        preflight(_config("svm", "xgboost", n_splits=5), index)
    message = str(info.value)
    assert "100 of 100 classes" in message and "'c000', 'c001', 'c002'" in message
    assert "(+97 more)" in message and "'c050'" not in message
    assert "folds.n_splits is 5" in message
    assert len(message) < 700


def test_calibration_folds_lowered_by_rule_and_noted():
    """3 plates, 3 folds: 2 training images per class, so svm calibrates with 2 folds."""
    index = _index(10, 1, 3)
    config = _config("svm", "xgboost", ModelSpec("svm", "svm_cal2", params={"calibration_folds": 2}))
    checked = preflight(config, index)
    params = {m.label: m.params for m in checked.config.models}
    assert params["svm"] == {"calibration_folds": 2}
    assert params["svm_cal2"] == {"calibration_folds": 2} and params["xgboost"] == {}
    assert checked.report["adjusted"] == {"svm": {"calibration_folds": 2}}
    note, = checked.notes("svm")
    assert "calibration_folds lowered from 3 to 2" in note and "10 of 10 classes" in note
    assert checked.notes("xgboost") == [] and checked.notes("svm_cal2") == []
    assert checked.report["train_images_per_class"] == {"min": 2, "median": 2.0, "max": 2}


def test_training_counts_follow_the_run_folds():
    index = _index(4, 2, 3)  # 6 images per class on 3 plates
    folds = make_folds(index, FoldsConfig(n_splits=3, group_column="group"), seed=0)
    counts = training_counts(folds)
    assert list(counts.columns) == [0, 1, 2]
    assert (counts.to_numpy() == 4).all()  # one plate (2 images) held out per fold


def test_one_training_image_per_class_stops_xgboost():
    index = _index(20, 2, 1)  # 2 images per class, 2 plain folds -> 1 training image per class
    with pytest.raises(PreflightError, match=r"xgboost needs 2 training images per class for its "
                                             r"early-stopping split; fold \d leaves 20 of 20"):
        preflight(_config("xgboost", n_splits=2, group=None), index)


def test_many_classes_svm_degrades_to_temperature_one_and_says_so():
    index = _index(60, 2, 1)
    checked = preflight(_config("svm", n_splits=2, group=None), index)
    degraded, switch = checked.notes("svm")
    assert degraded.startswith("svm: probabilities are the softmax of the decision values")
    assert switch == ("svm: 60 classes (> 50): one-vs-rest linear SVMs (classical.scale.OvRLinearSVM) "
                      "instead of 1770 one-vs-one RBF problems")
    assert checked.config.models[0].params == {}


def test_tuning_folds_lowered_and_deep_validation_noted():
    index = _index(5, 1, 3)
    config = _config(ModelSpec("xgboost", "xgb", params={"tune": True}),
                     ModelSpec("resnet18", "resnet18"))
    checked = preflight(config, index)
    assert checked.config.models[0].params == {"tune": True, "inner_folds": 2}
    assert "without validation or early stopping" not in " ".join(checked.notes("resnet18"))
    tiny = _index(5, 1, 2)
    deep = preflight(_config("resnet18", n_splits=2), tiny)
    assert "without validation or early stopping" in deep.notes("resnet18")[0]


def test_grouped_folds_need_groups_per_class():
    index = _index(8, 4, 2)  # enough images, only 2 plates for 3 folds
    with pytest.raises(PreflightError, match=r"grouped by 'group' need every class in 3 groups; "
                                             r"8 of 8 classes are in fewer"):
        preflight(_config("xgboost"), index)


def test_rxrx1_sized_index_is_checked_in_seconds(monkeypatch):
    """1,139 classes over 204 plates (RxRx1's shape, 1 site per class and plate): quick, as its
    work is one set of folds, one count table and one check per model, not any per class."""
    rng = np.random.default_rng(0)
    index = _index(1139, 1, 12)
    index["group"] = rng.permutation(index["group"].to_numpy())
    calls: Counter = Counter()
    for name in ("make_folds", "training_counts", "model_needs"):
        monkeypatch.setattr(preflight_module, name,
                            _counted(calls, name, getattr(preflight_module, name)))
    checked = preflight(_config("svm", "xgboost", n_splits=3, group=None), index)
    assert calls == {"make_folds": 1, "training_counts": 1, "model_needs": 2}
    assert checked.report["n_classes"] == 1139 and checked.report["train_images_per_class"]["min"] == 8
    assert any("bounded" in n for n in checked.notes("xgboost"))


def test_run_stops_before_feature_extraction(tmp_path, monkeypatch):
    class Dataset:
        index = _index(100, 1, 3)

    monkeypatch.setattr(runner, "prepare_dataset", lambda config: Dataset())
    monkeypatch.setattr(runner, "dataset_info", lambda ds, config, out: {})

    def no_features(*args, **kwargs):
        raise AssertionError("features extracted before the preflight check")

    monkeypatch.setattr(runner, "extract_features", no_features)
    config = _config("svm", n_splits=5).replace(output=str(tmp_path / "out"))
    with pytest.raises(PreflightError, match="100 of 100 classes"):
        runner.run(config)
