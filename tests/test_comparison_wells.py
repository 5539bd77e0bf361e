"""Well-level results: site probabilities averaged per well, metrics per well in metrics.json."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from cellcompare.comparison import load_config, register_model, run, unregister_model
from cellcompare.comparison.adapters import ModelAdapter
from cellcompare.comparison.wells import (
    WellLabelError,
    well_keys,
    well_metrics,
    well_probabilities,
    well_results,
)
from cellcompare.datasets.synth import make_cellpainting

CLASSES = ["a", "b"]


def _predictions(rows) -> pd.DataFrame:
    """rows: (sample_id, fold, true_label, proba_a)."""
    frame = pd.DataFrame(rows, columns=["sample_id", "fold", "true_label", "proba_a"])
    return frame.assign(model="m", proba_b=1.0 - frame.proba_a)


WELLS = pd.Series({"s1": "P1/A01", "s2": "P1/A01", "s3": "P1/A02", "s4": "P1/A02"})


def test_sites_are_averaged_per_well():
    preds = _predictions([("s1", 0, "a", 0.9), ("s2", 0, "a", 0.3),
                          ("s3", 0, "b", 0.2), ("s4", 0, "b", 0.6)])
    table = well_probabilities(preds, WELLS, CLASSES)
    assert list(table.well) == ["P1/A01", "P1/A02"] and list(table.n_sites) == [2, 2]
    np.testing.assert_allclose(table.proba_a, [0.6, 0.4])
    np.testing.assert_allclose(table.proba_a + table.proba_b, 1.0)


def test_well_accuracy_can_exceed_site_accuracy():
    # each well has one wrong site; the averages are right
    preds = _predictions([("s1", 0, "a", 0.9), ("s2", 0, "a", 0.3),
                          ("s3", 0, "b", 0.2), ("s4", 0, "b", 0.6)])
    metrics = well_metrics(well_probabilities(preds, WELLS, CLASSES), CLASSES, top_k=1)
    fold = metrics["m"]["folds"][0]
    assert fold["n_wells"] == 2 and fold["accuracy"] == 1.0
    assert metrics["m"]["summary"]["accuracy"]["mean"] == 1.0
    site_accuracy = np.mean((preds.proba_a > 0.5) == (preds.true_label == "a"))
    assert site_accuracy == 0.5


def test_sites_of_one_well_with_different_labels_are_refused():
    preds = _predictions([("s1", 0, "a", 0.9), ("s2", 0, "b", 0.3)])
    with pytest.raises(WellLabelError, match=r"well P1/A01 holds sites with labels \['a', 'b'\]"):
        well_probabilities(preds, WELLS, CLASSES)


def test_well_keys_prefer_plate_and_well_columns():
    index = pd.DataFrame({"sample_id": ["x", "y"], "Metadata_Plate": ["E1_P1", "E2_P1"],
                          "Metadata_Well": ["B02", "B02"], "well_id": ["1_B02", "1_B02"]})
    assert well_keys(index).to_dict() == {"x": "E1_P1/B02", "y": "E2_P1/B02"}
    assert well_keys(index.drop(columns=["Metadata_Plate"])).to_dict() == {"x": "1_B02", "y": "1_B02"}
    assert well_keys(pd.DataFrame({"sample_id": ["x"], "label": ["a"]})) is None


def test_layout_without_wells_says_so(tmp_path):
    result = well_results(tmp_path, pd.DataFrame({"sample_id": ["x"], "label": ["a"]}), CLASSES, 1)
    assert result["available"] is False and "plate and well" in result["reason"]
    assert not (tmp_path / "well_predictions.parquet").exists()


class PriorModel(ModelAdapter):
    """Predicts the training class frequencies (needs no features)."""

    kind = "deep"

    def fit(self, train):
        self.prior_ = np.array([(train.y == c).mean() for c in train.classes])
        return self

    def predict_proba(self, test):
        return np.tile(self.prior_, (len(test), 1))


@pytest.fixture
def prior_model():
    register_model("prior", PriorModel)
    yield
    unregister_model("prior")


def test_run_writes_well_metrics_beside_site_metrics(tmp_path, prior_model):
    make_cellpainting(tmp_path / "data", classes=2, per_class=4, size=32, plates=2, sites_per_well=2)
    config = {"dataset": {"path": str(tmp_path / "data"), "layout": "rxrx1"},
              "models": [{"name": "prior"}], "folds": {"n_splits": 2, "group_column": "group"},
              "top_k": 1, "seed": 0,
              "output": str(tmp_path / "out"), "report": False}
    (tmp_path / "c.json").write_text(json.dumps(config))
    out = run(load_config(tmp_path / "c.json"))
    metrics = json.loads((out / "metrics.json").read_text())
    wells = metrics["wells"]
    assert wells["available"] and wells["n_wells"] == 8 and wells["sites_per_well"]["min"] == 2
    assert wells["wells_split_across_folds"] == 0  # folds by plate keep a well's sites together
    folds = wells["models"]["prior"]["folds"]
    site_folds = metrics["models"]["prior"]["folds"]
    assert [f["fold"] for f in folds] == [f["fold"] for f in site_folds]
    assert [f["n_test"] for f in site_folds] == [2 * f["n_wells"] for f in folds]
    assert sum(f["n_wells"] for f in folds if f["fold"] >= 0) == 8  # the CV folds cover every well
    table = pd.read_parquet(out / "well_predictions.parquet")
    sites = pd.read_parquet(out / "predictions.parquet")
    assert set(table.n_sites) == {2} and len(table) == len(sites) // 2
    np.testing.assert_allclose(table.groupby("fold").proba_siRNA_0001.mean().to_numpy(),
                               sites.groupby("fold").proba_siRNA_0001.mean().to_numpy())


def test_wells_split_across_folds_are_counted(tmp_path):
    preds = _predictions([("s1", 0, "a", 0.9), ("s2", 1, "a", 0.3),
                          ("s3", 0, "b", 0.2), ("s4", 0, "b", 0.6)])
    preds.to_parquet(tmp_path / "predictions.parquet")
    index = pd.DataFrame({"sample_id": ["s1", "s2", "s3", "s4"], "Metadata_Plate": "P1",
                          "Metadata_Well": ["A01", "A01", "A02", "A02"]})
    result = well_results(tmp_path, index, CLASSES, 1)
    assert result["wells_split_across_folds"] == 1 and result["n_wells"] == 2
    assert [f["n_wells"] for f in result["models"]["m"]["folds"]] == [2, 1]
