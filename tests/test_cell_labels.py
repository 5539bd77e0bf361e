"""Per-cell labels: the gate, annotations, the leak guard and cell folds grouped by image."""

import json
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

from cellcompare.comparison import load_config, register_model, run, unregister_model
from cellcompare.comparison.config import FoldsConfig
from cellcompare.comparison.labels import (
    GateConfig,
    LabelsConfig,
    apply_gate,
    cell_index,
    gate_channel,
    guard_columns,
    match_annotations,
)
from cellcompare.comparison.adapters import ModelAdapter
from cellcompare.config import ConfigError


def test_otsu_gate_splits_two_populations():
    values = np.r_[np.full(20, 0.05), np.full(3, 0.6), np.nan]
    labels, threshold = apply_gate(values, GateConfig("Nuclei_Intensity_MeanIntensity_Marker"))
    assert 0.05 <= threshold < 0.6
    assert labels[:20].tolist() == ["negative"] * 20 and labels[20:23].tolist() == ["positive"] * 3
    assert labels[23] is None  # a cell without a value stays unlabelled


def test_numeric_threshold_is_used_as_given():
    labels, threshold = apply_gate(np.array([1.0, 2.0, 3.0]), GateConfig("f", 2.5, "hi", "lo"))
    assert threshold == 2.5 and labels.tolist() == ["lo", "lo", "hi"]


@pytest.mark.parametrize("section, message", [
    ({"level": "cell"}, "labels.source"),
    ({"level": "cell", "source": "gate"}, "labels.gate section"),
    ({"level": "cells"}, "labels.level"),
    ({"level": "cell", "source": "gate", "gate": {"feature": "f", "threshold": "median"}}, "threshold"),
])
def test_invalid_labels_sections_name_the_key(section, message):
    with pytest.raises(ConfigError, match=message):
        LabelsConfig.from_dict(section)


def test_gate_channel_and_every_column_of_it_are_found():
    names = ["DNA", "ER", "Marker"]
    assert gate_channel("Nuclei_Intensity_MeanIntensity_Marker", names) == "Marker"
    assert gate_channel("Nuclei_AreaShape_Area", names) is None
    columns = ["Metadata_Marker", "Nuclei_Intensity_MeanIntensity_Marker", "Cells_Correlation_DNA_Marker",
               "Nuclei_Intensity_MeanIntensity_DNA", "Cells_Intensity_MarkerLike_ER"]
    assert guard_columns(columns, "Marker") == columns[1:3]


def test_annotations_match_inside_nearby_and_report_the_rest():
    nuclei = np.zeros((40, 40), np.int32)
    nuclei[5:15, 5:15], nuclei[25:35, 25:35] = 1, 2
    cells = pd.DataFrame({"Metadata_sample_id": "a", "Metadata_ObjectNumber": [1, 2],
                          "Metadata_Location_Center_X": [9.5, 29.5], "Metadata_Location_Center_Y": [9.5, 29.5]})
    points = pd.DataFrame({"sample_id": ["a"] * 4, "x": [10, 20, 1, 39], "y": [10, 31, 39, 1],
                           "label": ["m", "i", "i", "i"]})
    matched, report = match_annotations(points, cells, {"a": nuclei}, radius=10)
    # (10, 10) inside 1; (20, 31) outside, 9.6 px from 2's centre; the two corners are too far
    assert matched.values.tolist() == [["a", 1, "m"], ["a", 2, "i"]]
    assert report["matched"] == 2 and len(report["unmatched"]) == 2 and report["doubly_matched"] == []
    twice = pd.concat([points.iloc[:1], points.iloc[:1].assign(label="i")])
    matched, report = match_annotations(twice, cells, {"a": nuclei}, radius=10)
    assert matched.empty and report["doubly_matched"] == [{"sample_id": "a", "object": 1, "points": 2}]


class _Index:
    index = pd.DataFrame({"sample_id": ["a", "b"], "label": ["x", "y"], "group": ["p1", "p2"]})


def test_cell_folds_group_by_image_unless_none():
    table = pd.DataFrame({"Metadata_cell_id": ["a#1", "a#2", "b#1"], "Metadata_sample_id": ["a", "a", "b"],
                          "label": ["m", "i", "i"]})
    info = {"warnings": []}
    index, folds = cell_index(table, _Index, FoldsConfig(n_splits=2), info)
    assert folds.group_column == "image" and index.image.tolist() == ["a", "a", "b"]
    assert index.group.tolist() == ["p1", "p1", "p2"] and info["warnings"] == []
    index, folds = cell_index(table, _Index, FoldsConfig(n_splits=2, group_column="none"), info)
    assert folds.group_column == "none" and "not grouped" in info["warnings"][0]
    assert info["fold_groups"] == "none"


class _Prior(ModelAdapter):
    def predict_proba(self, test):
        return np.tile(self.prior_, (len(test), 1))

    def _fit_prior(self, train):
        self.prior_ = np.array([(train.y == c).mean() for c in train.classes])
        return self


class SpyModel(_Prior):
    """A classical model that records the feature columns it is given."""

    kind = "classical"
    seen: ClassVar[list] = []

    def fit(self, train):
        type(self).seen.append(list(train.task.cell_table.columns))
        return self._fit_prior(train)


class DeepSpy(_Prior):
    """A deep model that records the shape of the crops it is given."""

    kind = "deep"
    seen: ClassVar[list] = []

    def __init__(self, *args, crops=None, **kwargs):  # a deep cell model is handed the run's crops
        super().__init__(*args, **kwargs)
        self.crops = crops

    def fit(self, train):
        type(self).seen.append(self.crops.crops.shape)
        return self._fit_prior(train)


@pytest.fixture
def spies():
    SpyModel.seen, DeepSpy.seen = [], []
    register_model("spy", SpyModel)
    register_model("deepspy", DeepSpy)
    yield SpyModel, DeepSpy
    unregister_model("spy")
    unregister_model("deepspy")


def test_gate_channel_cannot_reach_any_model(tmp_path, spies):
    channels = ["DNA", "ER", "Actin", "RNA", "Mito", "Golgi", "Marker"]
    config = {"dataset": {"path": str(tmp_path / "data"), "layout": "rxrx1",
                          "options": {"channel_names": channels},
                          "synth": {"classes": 1, "per_class": 6, "size": 96, "plates": 2,
                                    "mitotic_fraction": 0.2}},
              "features": {"preset": "minimal", "dna_channel": "DNA", "cyto_channel": "Actin"},
              "labels": {"level": "cell", "source": "gate",
                         "gate": {"feature": "Nuclei_Intensity_MeanIntensity_Marker", "above": "mitotic",
                                  "below": "interphase"}},
              "models": [{"name": "spy", "granularity": "cell"},
                         {"name": "deepspy", "granularity": "cell", "params": {"crop_size": 16}}],
              "folds": {"n_splits": 2}, "top_k": 1, "report": False, "output": str(tmp_path / "out")}
    path = tmp_path / "run.json"
    path.write_text(json.dumps(config))
    out = run(load_config(path))
    features, crops = spies
    assert features.seen and all(not any("Marker" in c for c in cols) for cols in features.seen)
    assert any("DNA" in c for c in features.seen[0])  # the other channels are still there
    assert crops.seen and all(shape[1] == 6 for shape in crops.seen)  # 7 channels, marker cut out
    metrics = json.loads((out / "metrics.json").read_text())
    guard = metrics["labels"]["leak_guard"]
    assert guard["channel"] == "Marker" and guard["dropped_columns"] > 0
    assert "Marker" not in guard["model_channels"]
    folds = pd.read_csv(out / "folds.csv", dtype=str)
    image = folds.sample_id.str.rsplit("#", n=1).str[0]
    assert (folds.groupby(image)["fold"].nunique() == 1).all()  # an image's cells share a fold
    preds = pd.read_parquet(out / "predictions.parquet")
    assert set(preds.sample_id) == set(folds.sample_id)  # metrics are per cell
    gate = pd.read_parquet(out / "cells" / "gate.parquet")
    assert set(gate.label) == {"mitotic", "interphase"}
    # the report's result files: gallery of right / wrong cells, gate histogram
    gallery = pd.read_parquet(out / "cells" / "gallery.parquet")
    kinds = set(zip(gallery.true_label, gallery.kind))
    assert ("interphase", "correct") in kinds and ("mitotic", "wrong") in kinds  # prior predicts the majority
    assert np.load(out / "cells" / "gallery.npy").shape[0] == len(gallery)
    from types import SimpleNamespace

    from cellcompare.reports.cells import cells_section

    section = cells_section(SimpleNamespace(root=out, metrics=metrics))
    assert section["gate"].uri.startswith("data:image/png;base64,")
    assert "Marker" in section["leak_note"] and section["gallery"]["groups"]


def test_synthetic_mitotic_cells_carry_the_marker_and_their_truth(tmp_path):
    from cellcompare.datasets import open_dataset
    from cellcompare.datasets.synth import make_cellpainting
    from cellcompare.datasets.synth.cellpainting import MARKER_CHANNEL, read_truth

    root = make_cellpainting(tmp_path, classes=1, per_class=2, size=128, plates=1, seed=2,
                             mitotic_fraction=0.3)
    ds = open_dataset(root, layout="rxrx1", channel_names=["DNA", "ER", "Actin", "RNA", "Mito", "Golgi",
                                                            MARKER_CHANNEL])
    sample = ds[0]
    assert sample.image.shape[0] == 7
    truth = pd.read_csv(root / "truth" / f"{sample.id}_cells.csv")
    nuclei, _ = read_truth(root, sample.id)
    assert set(truth.state) == {"mitotic", "interphase"}
    marker = sample.image[6].astype(float)
    means = {state: np.mean([marker[nuclei == k].mean() for k in part.object])
             for state, part in truth.groupby("state")}
    assert means["mitotic"] > 5 * means["interphase"]  # marker-positive
    dna = sample.image[0].astype(float)
    upper = {state: np.mean([np.percentile(dna[nuclei == k], 75) for k in part.object])
             for state, part in truth.groupby("state")}
    assert upper["mitotic"] > 1.2 * upper["interphase"]  # condensed, brighter DNA (saturating)


def test_cells_gate_config_loads_and_models_are_cell_models():
    from pathlib import Path

    config = load_config(Path(__file__).resolve().parents[1] / "configs" / "cells_gate.yaml")
    assert config.labels.level == "cell" and config.labels.gate.above == "mitotic"
    assert {m.granularity for m in config.models} == {"cell"}
    assert config.dataset.synth.mitotic_fraction == 0.08


def test_image_models_in_a_cell_task_are_refused(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("labels: {level: cell, source: gate, gate: {feature: f}}\nmodels: [svm]\n")
    with pytest.raises(ConfigError, match="granularity: cell"):
        load_config(path)


def test_annotations_label_the_cells_they_point_at(tmp_path, spies):
    from cellcompare.datasets.synth import make_cellpainting

    data = make_cellpainting(tmp_path / "data", classes=1, per_class=4, size=96, plates=2, seed=4,
                             mitotic_fraction=0.3)
    meta = pd.read_csv(data / "metadata.csv")
    points = pd.concat([pd.read_csv(data / "truth" / f"{sid}_cells.csv").assign(sample_id=sid)
                        for sid in meta.site_id], ignore_index=True)
    points = points.rename(columns={"state": "label"})[["sample_id", "x", "y", "label"]]
    far = pd.DataFrame({"sample_id": [meta.site_id[0]], "x": [-500.0], "y": [-500.0], "label": ["mitotic"]})
    pd.concat([points, far]).to_csv(tmp_path / "points.csv", index=False)
    config = {"dataset": {"path": str(data), "layout": "rxrx1",
                          "options": {"channel_names": ["DNA", "ER", "Actin", "RNA", "Mito", "Golgi", "Marker"]}},
              "features": {"preset": "minimal", "dna_channel": "DNA", "cyto_channel": "Actin"},
              "labels": {"level": "cell", "source": "annotations",
                         "annotations": {"path": str(tmp_path / "points.csv"), "radius": 6}},
              "models": [{"name": "spy", "granularity": "cell"}], "folds": {"n_splits": 2},
              "top_k": 1, "report": False, "output": str(tmp_path / "out")}
    path = tmp_path / "run.json"
    path.write_text(json.dumps(config))
    out = run(load_config(path))
    info = json.loads((out / "metrics.json").read_text())["labels"]
    assert info["source"] == "annotations" and info["n_points"] == len(points) + 1
    assert len(info["unmatched"]) >= 1 and info["unmatched"][-1]["x"] == -500.0
    assert info["matched"] >= 0.8 * len(points)  # true centres land in segmented nuclei
    labelled = pd.read_parquet(out / "cells" / "labels.parquet")
    assert set(labelled.label) == {"mitotic", "interphase"} and len(labelled) == info["matched"]
