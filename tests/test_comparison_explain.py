"""comparison.explain: example selection, training records, example-cell crops, Grad-CAM files."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from cellcompare.comparison.explain import (
    select_examples,
    top_features,
    training_record,
    write_feature_examples,
    write_gradcam_examples,
)
from cellcompare.comparison.adapters import DeepModel, FoldData
from cellcompare.comparison.task import ImageTask
from cellcompare.datasets import Sample


class TinyDataset:
    """``get(sample_id).float_image`` over in-memory uint8 images."""

    def __init__(self, images: dict[str, np.ndarray], channel_names=("DNA", "Actin")):
        self.images = images
        self.channel_names = tuple(channel_names)
        self.ids = np.asarray(list(images))

    def get(self, sample_id: str) -> Sample:
        return Sample(id=sample_id, image=self.images[sample_id])


def test_select_examples_takes_most_confident_right_and_wrong_per_class():
    y_true = ["a", "a", "a", "b", "b", "b"]
    y_pred = ["a", "a", "b", "b", "a", "a"]
    conf = [0.6, 0.9, 0.7, 0.8, 0.5, 0.95]
    assert select_examples(y_true, y_pred, conf, ["a", "b"]).tolist() == [1, 2, 3, 5]
    assert select_examples(y_true, y_pred, conf, ["b", "a"], per_class=2).tolist() == [3, 5, 4, 1, 0, 2]


def test_training_record_reads_deep_history_and_classical_trials():
    history = [{"epoch": 1, "train_loss": 1.2, "train_accuracy": 0.4}]
    deep = SimpleNamespace(classifier_=SimpleNamespace(history_=history, tuning_trials_=[]))
    assert training_record(deep) == {"history": history, "tuning_trials": []}
    trials = [{"params": {"C": 1.0}, "mean_log_loss": 0.7, "seconds": 0.1}]
    classical = SimpleNamespace(estimator_=SimpleNamespace(report_={"tuning": trials}))
    assert training_record(classical) == {"history": [], "tuning_trials": trials}
    assert training_record(SimpleNamespace()) == {"history": [], "tuning_trials": []}


def test_top_features_merges_mean_columns_and_drops_zero_gain():
    importance = pd.DataFrame({
        "model": ["xgb"] * 6 + ["other"],
        "fold": [0, 1, 0, 1, 0, 0, 0],
        "feature": ["Cells_A", "Cells_A", "Cells_B__mean", "Cells_B__mean", "Cells_C", "Cells_D", "Cells_C"],
        "gain": [1.0, 3.0, 5.0, 5.0, 0.0, 9.0, 100.0]})
    # Cells_D is not a cell column; Cells_C has zero gain for xgb
    assert top_features(importance, "xgb", ["Cells_A", "Cells_B", "Cells_C"]) == ["Cells_B", "Cells_A"]
    assert top_features(importance, "xgb", ["Cells_A", "Cells_B"], n=1) == ["Cells_B"]


def test_feature_examples_crop_the_cells_at_both_ends(tmp_path):
    image = np.zeros((2, 160, 160), np.uint8)
    image[0, 10, 20] = 255          # DNA spot at (y=10, x=20): the centre of cell 1
    image[1, 120, 130] = 128        # Actin spot at (y=120, x=130): the centre of cell 2
    dataset = TinyDataset({"s1": image})
    cells = pd.DataFrame({"Metadata_sample_id": ["s1", "s1", "s1"], "Metadata_label": ["a"] * 3,
                          "Metadata_Location_Center_X": [20.0, 130.0, 80.0],
                          "Metadata_Location_Center_Y": [10.0, 120.0, 80.0],
                          "Cells_F": [3.0, -1.0, np.nan]})
    importance = pd.DataFrame({"model": ["xgb"], "fold": [0], "feature": ["Cells_F"],
                               "family": ["X"], "gain": [2.0], "permutation": [np.nan]})
    (path,) = write_feature_examples(tmp_path, importance, cells, dataset, per_end=1)
    assert path == tmp_path / "explain" / "xgb.features.npz"
    with np.load(path) as data:
        assert data["end"].tolist() == ["low", "high"]
        assert data["value"].tolist() == [-1.0, 3.0]          # the NaN cell is never shown
        crops = data["crops"]
        assert crops.dtype == np.uint8 and crops.shape == (2, 2, 64, 64)
        assert crops[0, 1, 32, 32] == 128 and crops[0, 0].max() == 0    # cell 2: Actin spot
        assert crops[1, 0, 32, 32] == 255 and crops[1, 1].max() == 0    # cell 1: DNA spot
        assert data["channels"].tolist() == ["DNA", "Actin"]


def test_gradcam_examples_of_a_fitted_deep_adapter(tmp_path):
    rng = np.random.default_rng(0)
    images, labels = {}, []
    for i in range(12):
        label = "disk" if i % 2 else "flat"
        img = (rng.random((2, 16, 16)) * 40).astype(np.uint8)
        if label == "disk":
            img[0, 5:11, 5:11] = 250
        images[f"s{i}"] = img
        labels.append(label)
    dataset = TinyDataset(images)
    ids = np.asarray(list(images))
    y = np.asarray(labels)

    task = ImageTask(pd.DataFrame({"sample_id": ids, "label": y}), ("disk", "flat"))

    def fold(index):
        return FoldData(sample_ids=ids[index], y=y[index], groups=np.zeros(len(index), str),
                        dataset=dataset, task=task)

    adapter = DeepModel("smallcnn", params={"weights": "none", "image_size": 16, "epochs": 2,
                                            "batch_size": 4, "progress": False, "val_fraction": 0.0})
    train, test = fold(np.arange(8)), fold(np.arange(8, 12))
    adapter.fit(train)
    proba = adapter.predict_proba(test)
    path = write_gradcam_examples(tmp_path, "smallcnn", 0, adapter, test, proba, ["disk", "flat"])
    assert path == tmp_path / "explain" / "smallcnn__fold0.gradcam.npz"
    pred = np.asarray(["disk", "flat"])[proba.argmax(1)]
    chosen = select_examples(test.y, pred, proba.max(1), ["disk", "flat"])
    with np.load(path) as data:
        assert data["sample_id"].tolist() == test.sample_ids[chosen].tolist()
        assert data["predicted"].tolist() == pred[chosen].tolist()
        np.testing.assert_allclose(data["confidence"], proba.max(1)[chosen], rtol=1e-6)
        assert data["images"].shape == (len(chosen), 2, 16, 16)
        assert data["cams"].shape == (len(chosen), 16, 16)
        # the stored image is the model input before normalisation: the dataset's pixels,
        # each channel scaled to the file's 99.9th percentile for display
        stored = data["images"].astype(float)
        original = np.stack([images[s] for s in data["sample_id"]]).astype(float)
        for c in range(2):
            assert np.corrcoef(stored[:, c].ravel(), original[:, c].ravel())[0, 1] > 0.999
        assert data["channels"].tolist() == ["DNA", "Actin"]
        assert str(data["granularity"]) == "image"
    assert write_gradcam_examples(tmp_path, "x", 0, SimpleNamespace(), test, proba, ["disk", "flat"]) is None

    # a cell-crop model: examples are crops, chosen by each crop's own prediction
    crops = [images[s][:, 2:14, 2:14] for s in test.sample_ids for _ in range(2)]
    crop_ids = np.repeat(test.sample_ids, 2)
    cell_proba = np.repeat(proba, 2, axis=0)
    cell_proba[::2] = cell_proba[::2, ::-1]       # the first crop of each image disagrees
    cell = SimpleNamespace(granularity="cell", classifier_=adapter.classifier_, channel_index=None,
                           cell_proba_=(crop_ids, crops, cell_proba))
    path = write_gradcam_examples(tmp_path, "cells", 1, cell, test, proba, ["disk", "flat"])
    crop_pred = np.asarray(["disk", "flat"])[cell_proba.argmax(1)]
    chosen = select_examples(np.repeat(test.y, 2), crop_pred, cell_proba.max(1), ["disk", "flat"])
    with np.load(path) as data:
        assert data["sample_id"].tolist() == crop_ids[chosen].tolist()
        assert data["true_label"].tolist() == np.repeat(test.y, 2)[chosen].tolist()
        assert data["predicted"].tolist() == crop_pred[chosen].tolist()
        assert data["images"].shape == (len(chosen), 2, 16, 16)   # resized to the model's input
        assert str(data["granularity"]) == "cell"


@pytest.mark.parametrize("columns", [["Metadata_sample_id"], []])
def test_feature_examples_need_cell_locations(tmp_path, columns):
    cells = pd.DataFrame({c: ["s1"] for c in columns})
    importance = pd.DataFrame({"model": ["xgb"], "feature": ["Cells_F"], "gain": [1.0]})
    assert write_feature_examples(tmp_path, importance, cells, TinyDataset({})) == []


@pytest.mark.slow
def test_compare_writes_explanations_headline_and_prints_the_table(tmp_path, capsys):
    import json

    from cellcompare.cli import main

    # the demo's deep models read single-cell crops: Grad-CAM then explains crops
    cnn = {"name": "smallcnn", "granularity": "cell",
           "params": {"weights": "none", "image_size": 32, "epochs": 2, "batch_size": 16,
                      "cells_per_image": 8, "normalize": "group", "amp": False,
                      "progress": False, "device": "cpu"}}
    config = {"dataset": {"path": str(tmp_path / "data"), "layout": "rxrx1",
                          "synth": {"classes": 3, "per_class": 6, "size": 96, "plates": 3}},
              "features": {"preset": "minimal", "dna_channel": "DNA", "cyto_channel": "Actin"},
              "models": ["xgboost", cnn], "folds": {"n_splits": 3}, "top_k": 2, "seed": 0,
              "output": str(tmp_path / "results")}
    path = tmp_path / "run.json"
    path.write_text(json.dumps(config))
    assert main(["compare", "--config", str(path)]) == 0
    out = tmp_path / "results"
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed[-1] == str(out / "report.html") and printed[-2] == ""
    assert printed[0].split()[:2] == ["model", "accuracy"]
    assert [line.split()[0] for line in printed[2:4]] == ["xgboost", "smallcnn"]

    metrics = json.loads((out / "metrics.json").read_text())
    h = metrics["headline"]
    assert (h["model_a"]["model"], h["model_b"]["model"]) == ("xgboost", "smallcnn")
    assert h["unit"] == "well" and h["n_units"] == metrics["bootstrap"]["n_units"] == 18
    assert h["model_a"]["fold_mean"] == metrics["models"]["xgboost"]["summary"]["accuracy"]["mean"]
    assert metrics["pairwise"]["models"] == ["xgboost", "smallcnn"]
    assert metrics["features"]["extraction"]["images"] == 18
    for fold in metrics["models"]["smallcnn"]["folds"]:
        assert [r["epoch"] for r in fold["history"]] == [1, 2]
    assert sorted(p.name for p in (out / "explain").iterdir()) == [
        "smallcnn__fold0.gradcam.npz", "smallcnn__fold1.gradcam.npz",
        "smallcnn__fold2.gradcam.npz", "xgboost.features.npz"]
    with np.load(out / "explain" / "smallcnn__fold0.gradcam.npz") as data:
        assert str(data["granularity"]) == "cell" and data["images"].shape[-1] == 32
        assert set(data["sample_id"]) <= set(pd.read_csv(out / "folds.csv")["sample_id"].astype(str))
    html = (out / "report.html").read_text()
    assert "Where smallcnn looks" in html and "What xgboost&#39;s top features measure" in html
    assert "test single-cell crops" in html
