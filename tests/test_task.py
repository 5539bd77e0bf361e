"""The task objects: what a unit is (an image or a cell) and what follows from it."""

from __future__ import annotations

import json
import logging
import sys
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from cellcompare.comparison.adapters import ClassicalModel, FoldData
from cellcompare.comparison.cellids import CELL_COLUMN, cell_id
from cellcompare.comparison.task import CellTask, ImageTask

CELLS = pd.DataFrame({"Metadata_sample_id": ["s1", "s1", "s2", "s3"],
                      "Metadata_ObjectNumber": [1, 2, 1, 1],
                      "f": [0.1, 0.2, 0.9, 0.8]})
INDEX = pd.DataFrame({"sample_id": ["s1", "s2", "s3"], "label": ["a", "b", "b"], "group": ["p1", "p1", "p2"],
                      "Metadata_Plate": ["p1", "p1", "p2"], "Metadata_Well": ["A01", "A01", "B02"]})


def _cell_task():
    table = CELLS.assign(**{CELL_COLUMN: cell_id(CELLS.Metadata_sample_id, CELLS.Metadata_ObjectNumber)})
    index = pd.DataFrame({"sample_id": table[CELL_COLUMN], "label": ["a", "b", "b", "a"],
                          "image": table.Metadata_sample_id})
    return CellTask(index, ("a", "b"), cell_table=table)


class _Cache:
    """The slice of ``deep.crop_cache.CropCache`` the tasks read: one crop per row of CELLS."""

    cells = CELLS
    image_ids = CELLS.Metadata_sample_id.to_numpy(dtype=str)

    def rows(self, ids):
        return np.concatenate([np.flatnonzero(CELLS.Metadata_sample_id == s) for s in ids]).astype(np.int64)


def test_an_image_task_selects_every_cell_of_its_images():
    task = ImageTask(INDEX, ("a", "b"))
    assert task.rows(CELLS, ["s1", "s3"])["f"].tolist() == [0.1, 0.2, 0.8]
    assert task.key == "Metadata_sample_id" and task.level == "image"


def test_a_cell_task_selects_cells_by_cell_id():
    task = _cell_task()
    assert task.rows(task.cell_table, ["s1#2", "s3#1"])["f"].tolist() == [0.2, 0.8]
    assert task.images_of(["s1#2", "s3#1"]).tolist() == ["s1", "s3"]
    assert task.key == CELL_COLUMN and task.level == "cell"


def test_crop_rows_follow_the_unit():
    rows, units = ImageTask(INDEX, ("a", "b")).crop_rows(_Cache(), ["s2", "s1"])
    assert rows.tolist() == [2, 0, 1] and units.tolist() == ["s2", "s1", "s1"]
    rows, units = _cell_task().crop_rows(_Cache(), ["s1#2", "s9#1", "s2#1"])
    assert rows.tolist() == [1, 2] and units.tolist() == ["s1#2", "s2#1"]  # s9 has no crop


def test_uncertainty_units_are_wells_for_images_and_cells_for_cells():
    assert ImageTask(INDEX, ("a", "b")).units == {"units": {"s1": "p1/A01", "s2": "p1/A01", "s3": "p2/B02"},
                                                  "unit": "well"}
    assert _cell_task().units == {"units": None, "unit": "cell"}
    assert _cell_task().wells("unused", 1)["available"] is False


def test_only_a_cell_task_writes_a_gallery(tmp_path, monkeypatch):
    called = []
    ImageTask(INDEX, ("a", "b")).write_gallery(tmp_path, {}, lambda: called.append("crops"))
    assert called == []  # an image task never cuts the gallery's crops
    import cellcompare.comparison.task as task_module

    monkeypatch.setattr(task_module, "write_cell_gallery", lambda out, metrics, crops: called.append(crops))
    _cell_task().write_gallery(tmp_path, {}, lambda: "crops")
    assert called == ["crops"]


class _Estimator:
    """Probability of class b = the feature value; two classes."""

    classes_ = np.array(["a", "b"])

    def predict_proba(self, table):
        f = table["f"].to_numpy()
        return np.stack([1 - f, f], axis=1)


@pytest.mark.parametrize("task, ids, expected", [
    (ImageTask(INDEX, ("a", "b"), cell_table=CELLS), ["s1", "s2"], [0.15, 0.9]),  # mean of cells
    (_cell_task(), ["s1#2", "s1#1", "s3#1"], [0.2, 0.1, 0.8]),                      # one row each
])
def test_the_classical_adapter_scores_the_task_units(task, ids, expected):
    adapter = ClassicalModel("svm", granularity="cell")
    adapter.estimator_, adapter.prior_ = _Estimator(), np.array([0.5, 0.5])
    test = FoldData(np.array(ids), np.array(["a"] * len(ids)), np.array(["g"] * len(ids)), task=task)
    np.testing.assert_allclose(adapter.predict_proba(test)[:, 1], expected)


def test_fold_data_labels_its_units():
    fold = FoldData(np.array(["x", "y"]), np.array(["a", "b"]), np.array(["g", "g"]),
                    task=ImageTask(INDEX, ("a", "b")))
    assert fold.labels_of(["y", "y", "x"]).tolist() == ["b", "b", "a"]
    assert fold.classes == ("a", "b")


def test_a_missing_torch_is_said_by_environment_and_cuda_detection(monkeypatch, caplog):
    from cellcompare.classical.models import cuda_available
    from cellcompare.comparison.results import environment

    monkeypatch.setitem(sys.modules, "torch", None)  # ``import torch`` raises ImportError
    with caplog.at_level(logging.INFO):
        assert environment()["gpu"] is None
        assert cuda_available() is False
    said = [r.getMessage() for r in caplog.records]
    assert any("torch is not installed; metrics.json records no GPU" in m for m in said)
    assert any("torch is not installed; classical models cannot detect CUDA" in m for m in said)


def test_a_broken_reports_package_fails_the_run_instead_of_hiding(monkeypatch, tmp_path):
    from cellcompare.comparison import runner

    from cellcompare.comparison.stages import StageRecorder

    (tmp_path / "metrics.json").write_text("{}")
    monkeypatch.setitem(sys.modules, "cellcompare.reports", None)
    with pytest.raises(ImportError):
        runner._report(tmp_path, SimpleNamespace(report=True), StageRecorder(tmp_path))
    runner._report(tmp_path, SimpleNamespace(report=False), StageRecorder(tmp_path))  # nothing imported
    assert "stages" in json.loads((tmp_path / "metrics.json").read_text())
