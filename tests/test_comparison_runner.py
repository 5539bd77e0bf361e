"""The runner: resumable units (fake model) and one end-to-end run on a tiny synthetic dataset."""

import json

import numpy as np
import pandas as pd
import pytest

from cellcompare import serve
from cellcompare.comparison import (
    load_config,
    register_model,
    registered_names,
    run,
    unregister_model,
)
from cellcompare.comparison.adapters import ModelAdapter
from cellcompare.comparison.stages import folder_bytes


class CountingModel(ModelAdapter):
    """Predicts the training class frequencies; counts fit calls (needs no features)."""

    kind = "deep"
    fits = 0

    def fit(self, train):
        type(self).fits += 1
        self.prior_ = np.array([(train.y == c).mean() for c in train.classes])
        return self

    def predict_proba(self, test):
        return np.tile(self.prior_, (len(test), 1))


@pytest.fixture
def counting_model():
    """Register ``counting`` for one test and take it out of the global registry afterwards."""
    register_model("counting", CountingModel)
    CountingModel.fits = 0
    yield CountingModel
    unregister_model("counting")
    assert "counting" not in registered_names()


def _write_config(tmp_path, models, name="results", **extra):
    config = {"dataset": {"path": str(tmp_path / "data"), "layout": "rxrx1",
                          "synth": {"classes": 3, "per_class": 6, "size": 96, "plates": 3}},
              "features": {"preset": "minimal", "dna_channel": "DNA", "cyto_channel": "Actin"},
              "models": models, "folds": {"n_splits": 3}, "top_k": 2, "seed": 0,
              "output": str(tmp_path / name), **extra}
    path = tmp_path / f"{name}.json"  # JSON is YAML
    path.write_text(json.dumps(config))
    return load_config(path)


def test_rerun_skips_finished_units(tmp_path, counting_model):
    config = _write_config(tmp_path, [{"name": "counting"}], report=False)
    out = run(config)
    assert CountingModel.fits == 3
    (out / "units" / "counting__fold1.json").unlink()  # as if the run died during fold 1
    run(config)
    assert CountingModel.fits == 4
    metrics = json.loads((out / "metrics.json").read_text())
    assert [f["fold"] for f in metrics["models"]["counting"]["folds"]] == [0, 1, 2]
    preds = pd.read_parquet(out / "predictions.parquet")
    assert len(preds) == 18 and preds.sample_id.is_unique
    changed = _write_config(tmp_path, [{"name": "counting", "params": {"alpha": 1}}], report=False)
    run(changed)  # other settings: every unit runs again
    assert CountingModel.fits == 7


@pytest.mark.slow
def test_end_to_end_separates_classes_on_identical_folds(tmp_path):
    cnn = {"name": "smallcnn", "params": {"weights": "none", "image_size": 32, "epochs": 1,
                                          "batch_size": 8, "amp": False, "progress": False,
                                          "device": "cpu"}}
    out = run(_write_config(tmp_path, ["svm", "xgboost", cnn]))
    folds = pd.read_csv(out / "folds.csv", dtype={"sample_id": str})
    preds = pd.read_parquet(out / "predictions.parquet")
    expected = folds.set_index("sample_id").fold
    for model, rows in preds.groupby("model"):
        assert sorted(rows.sample_id) == sorted(folds.sample_id), model
        assert (rows.set_index("sample_id").fold == expected.loc[rows.sample_id]).all(), model
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["models"]) == {"svm", "xgboost", "smallcnn"}
    best = max(metrics["models"][m]["summary"]["accuracy"]["mean"] for m in ("svm", "xgboost"))
    assert best >= 0.75  # chance is 1/3
    assert metrics["models"]["smallcnn"]["weights"]["source"] == "none"
    assert len(metrics["comparisons"]) == 3 * len(metrics["metric_names"])
    summary = pd.read_csv(out / "summary.csv")
    assert list(summary.model) == ["svm", "xgboost", "smallcnn"]
    assert (out / "feature_importance.csv").exists() and (out / "class_differences.json").exists()
    segmentation = metrics["segmentation"]        # chosen once, recorded, and stated in the report
    assert segmentation["dna_channel"] == {"name": "DNA", "chosen_by": "config"}
    assert segmentation["diameter"]["chosen_by"] == "estimated"
    low, high = segmentation["diameter"]["range"]
    assert low < segmentation["qc"]["median_diameter"] < high
    assert segmentation["qc"]["n_images"] == 18 and segmentation["qc"]["flagged"] == []
    assert "nuclei segmented on channel &#39;DNA&#39; (as configured), diameter" in \
        (out / "report.html").read_text()
    stages = metrics["stages"]                    # each stage timed, its memory and bytes recorded
    assert list(stages) == ["dataset", "extraction", "tables", "units/svm", "units/xgboost",
                            "deep input cache", "units/smallcnn", "results", "report"]
    assert all(s["seconds"] > 0 and s["peak_rss_mb"] > 100 for s in stages.values())
    assert stages["units/svm"]["calls"] == 3 and stages["report"]["calls"] == 1
    assert stages["extraction"]["bytes_written"] >= folder_bytes(out / "features")
    assert stages["report"]["bytes_written"] >= (out / "report.html").stat().st_size
    epochs = metrics["models"]["smallcnn"]["folds"][0]["history"]
    assert epochs[0]["seconds"] > 0 and epochs[0]["images"] == round(
        epochs[0]["images_per_s"] * epochs[0]["seconds"])

    again = run(_write_config(tmp_path, ["svm", "xgboost"], name="rerun", report=False))
    assert (pd.read_csv(again / "folds.csv", dtype={"sample_id": str}).equals(folds))
    second = json.loads((again / "metrics.json").read_text())
    for model in ("svm", "xgboost"):
        for a, b in zip(metrics["models"][model]["folds"], second["models"][model]["folds"]):
            for key in ("accuracy", "balanced_accuracy", "macro_f1", "log_loss", "confusion_matrix"):
                assert a[key] == b[key], (model, key)


def test_features_of_other_settings_are_not_mixed(tmp_path):
    from cellcompare.comparison.config import ConfigError
    from cellcompare.comparison.prepare import check_manifest

    path = tmp_path / "manifest.json"
    path.write_text(json.dumps({"config": {"preset": "standard", "min_area": 30}}))
    check_manifest(path, {"preset": "standard", "min_area": 30})
    with pytest.raises(ConfigError, match=r"\['preset'\] differ"):
        check_manifest(path, {"preset": "minimal", "min_area": 30})


def test_missing_imagenet_weights_are_said_not_silent(monkeypatch, tmp_path):
    import torch

    from cellcompare.comparison.adapters import DeepModel

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))  # an empty hub cache
    adapter = DeepModel("resnet18", params={"weights": "auto", "epochs": 1})
    assert adapter._config().weights == "none"
    assert "not cached" in adapter.notes[0]


def test_export_models_names_a_configured_label(tmp_path):
    from cellcompare.comparison.config import ConfigError

    with pytest.raises(ConfigError, match=r"export_models: \['resnet'\].*\['svm', 'fast'\]"):
        _write_config(tmp_path, ["svm", {"name": "xgboost", "label": "fast"}], export_models=["resnet"])
    config = _write_config(tmp_path, ["svm"], export_models="svm")
    assert config.export_models == ("svm",)
    assert _write_config(tmp_path, ["svm"]).export_models == ()


@pytest.mark.slow
def test_exported_model_serves_the_run_classes(tmp_path, caplog):
    from cellcompare.datasets import open_dataset

    xgb = {"name": "xgboost", "params": {"n_estimators": 20}}
    config = _write_config(tmp_path, [xgb], export_models=["xgboost"], report=False, jobs=1,
                           feature_importance="none")
    out = run(config)
    metrics = json.loads((out / "metrics.json").read_text())
    model_dir = out / "models" / "xgboost"
    assert metrics["exported_models"] == {"xgboost": str(model_dir)}
    stamp = json.loads((model_dir / "export.json").read_text())
    assert stamp["n_train"] == 18 and len(stamp["settings_sha256"]) == 64

    ds = open_dataset(tmp_path / "data", layout="rxrx1")
    sample = ds.get(str(ds.ids[0]))
    classes, proba = serve.load_predictor(model_dir).predict_proba([sample])
    assert classes == tuple(metrics["classes"]) and len(classes) == 3
    assert proba.shape == (1, 3) and np.isclose(proba.sum(), 1.0) and (proba >= 0).all()

    written = (model_dir / "serve.json").stat().st_mtime_ns
    with caplog.at_level("INFO", logger="cellcompare.comparison.export"):
        run(config)  # same settings: the export is not redone
    assert (model_dir / "serve.json").stat().st_mtime_ns == written
    assert "already exported" in caplog.text
