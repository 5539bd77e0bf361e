"""compare reads the per-cell table only when something needs it, capped per image, and says so."""

from __future__ import annotations

import json
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest

import cellcompare.features as features
from cellcompare.comparison import load_config, register_model, run, unregister_model
from cellcompare.comparison.celltable import cell_table_key, reads_cells
from cellcompare.comparison.config import CellTableConfig, CompareConfig, ModelSpec
from cellcompare.comparison.explain import example_columns, write_feature_examples
from cellcompare.comparison.adapters import ModelAdapter
from cellcompare.config import ConfigError, UnknownKeyError


class CellSpy(ModelAdapter):
    """A classical model that records how many cells of each training image it was given."""

    kind = "classical"
    seen: ClassVar[list[pd.Series]] = []

    def fit(self, train):
        rows = train.task.cell_table[train.task.cell_table["Metadata_sample_id"].isin(train.sample_ids)]
        type(self).seen.append(rows.groupby("Metadata_sample_id").size())
        self.prior_ = np.array([(train.y == c).mean() for c in train.classes])
        return self

    def predict_proba(self, test):
        return np.tile(self.prior_, (len(test), 1))


@pytest.fixture
def cellspy():
    CellSpy.seen = []
    register_model("cellspy", CellSpy)
    yield CellSpy
    unregister_model("cellspy")


@pytest.fixture
def table_reads(monkeypatch):
    """Every ``features.load_table`` call as ``(level, cells_per_image, columns)``."""
    calls = []
    original = features.load_table

    def spy(out_dir, level="image", **kwargs):
        calls.append((level, kwargs.get("cells_per_image"), kwargs.get("columns")))
        return original(out_dir, level, **kwargs)

    monkeypatch.setattr(features, "load_table", spy)
    return calls


def _config(tmp_path, models, classes=2, per_class=3, **extra) -> CompareConfig:
    config = {"dataset": {"path": str(tmp_path / "data"), "layout": "rxrx1",
                          "synth": {"classes": classes, "per_class": per_class, "size": 96,
                                    "plates": 3}},
              "features": {"preset": "minimal", "dna_channel": "DNA", "cyto_channel": "Actin"},
              "models": models, "folds": {"n_splits": 3}, "top_k": 1, "seed": 0, "jobs": 1,
              "report": False, "feature_importance": "none", "output": str(tmp_path / "out"),
              **extra}
    path = tmp_path / "run.json"
    path.write_text(json.dumps(config))
    return load_config(path)


@pytest.mark.parametrize("value", [0, -3, 2.5, "10", True])
def test_a_bad_cap_names_the_key_and_the_file(tmp_path, value):
    with pytest.raises(ConfigError, match=r"cell_table\.cells_per_image must be a whole number >= 1"
                       ) as info:
        _config(tmp_path, ["svm"], cell_table={"cells_per_image": value})
    assert str(tmp_path / "run.json") in str(info.value)


def test_unknown_cell_table_keys_are_refused(tmp_path):
    with pytest.raises(UnknownKeyError, match=r"'cell_table\.cells_per_imag'"):
        _config(tmp_path, ["svm"], cell_table={"cells_per_imag": 10})


def test_a_cap_with_annotation_labels_is_refused(tmp_path):
    labels = {"level": "cell", "source": "annotations", "annotations": {"path": "points.csv"}}
    with pytest.raises(ConfigError, match="drop annotated cells"):
        _config(tmp_path, [{"name": "svm", "granularity": "cell"}], labels=labels,
                cell_table={"cells_per_image": 5})


def test_the_cap_is_in_the_key_of_the_models_it_changes_only():
    capped = CompareConfig(cell_table=CellTableConfig(cells_per_image=7))
    svm_cells, svm_images = ModelSpec("svm", "a", "cell"), ModelSpec("svm", "b", "image")
    deep_cells = ModelSpec("smallcnn", "c", "cell")
    assert [reads_cells(s) for s in (svm_cells, svm_images, deep_cells)] == [True, False, False]
    assert reads_cells(deep_cells, level="cell")
    assert cell_table_key(svm_cells, capped) == {"cells_per_image": 7}
    assert cell_table_key(svm_images, capped) == cell_table_key(deep_cells, capped) == {}
    assert cell_table_key(svm_cells, CompareConfig()) == {}  # units made before the key stay current


@pytest.mark.slow
def test_cell_models_get_at_most_the_cap_and_a_new_cap_refits(tmp_path, cellspy, table_reads):
    spy = {"name": "cellspy", "granularity": "cell"}
    out = run(_config(tmp_path, [spy], cell_table={"cells_per_image": 2}))
    images = features.load_table(out / "features", level="image").set_index("Metadata_sample_id")
    counts = images["Metadata_Object_Count"]
    assert counts.max() > 3  # the cap leaves cells out
    assert len(cellspy.seen) == 3
    for seen in cellspy.seen:
        assert seen.to_dict() == {sid: min(2, counts[sid]) for sid in seen.index}
    assert ("cell", 2, None) in table_reads
    record = json.loads((out / "metrics.json").read_text())["features"]["cell_table"]
    kept = int(np.minimum(counts, 2).sum())
    assert record == {"cells_per_image": 2, "seed": 0, "n_cells": int(counts.sum()),
                      "reads": [{"purpose": "models", "rows": kept, "images": len(counts),
                                 "columns": "all"}]}
    first = [s.copy() for s in cellspy.seen]
    run(_config(tmp_path, [spy], cell_table={"cells_per_image": 2}))
    assert len(cellspy.seen) == 3  # same cap: finished units are kept
    run(_config(tmp_path, [spy], cell_table={"cells_per_image": 3}))
    assert len(cellspy.seen) == 6  # another cap: every unit fits again
    assert all(s.max() <= 3 for s in cellspy.seen[3:]) and cellspy.seen[3].sum() > first[0].sum()
    out = run(_config(tmp_path, [spy], output=str(tmp_path / "all")))
    record = json.loads((out / "metrics.json").read_text())["features"]["cell_table"]
    assert record["cells_per_image"] is None and record["reads"][0]["rows"] == int(counts.sum())


@pytest.mark.slow
def test_image_models_never_read_the_cell_table_and_examples_read_their_columns(tmp_path, table_reads):
    xgb = {"name": "xgboost", "params": {"n_estimators": 5}}
    out = run(_config(tmp_path, [xgb], classes=3, per_class=6, feature_importance="gain",
                      cell_table={"cells_per_image": 50}))
    cell_reads = [c for c in table_reads if c[0] == "cell"]
    importance = pd.read_csv(out / "feature_importance.csv")
    names = features.tables.open_table(out / "features", "cell").schema.names
    columns = example_columns(importance, names)
    assert cell_reads == [("cell", 50, columns)]  # once, for the example cells, their columns only
    assert 5 < len(columns) < len(names) / 10
    metrics = json.loads((out / "metrics.json").read_text())
    read = metrics["features"]["cell_table"]["reads"]
    assert [r["purpose"] for r in read] == ["example cells"] and read[0]["columns"] == len(columns) + 2
    # the projected read shows the same cells as the whole table would
    whole = features.load_table(out / "features", level="cell", cells_per_image=50)
    again = write_feature_examples(tmp_path / "whole", importance, whole, load_config(
        tmp_path / "run.json").dataset.open())
    got, want = np.load(out / "explain" / "xgboost.features.npz"), np.load(again[0])
    for key in ("crops", "feature", "end", "value", "sample_id", "label"):
        np.testing.assert_array_equal(got[key], want[key])


def test_example_columns_are_the_places_the_diameter_and_each_models_top_features():
    importance = pd.DataFrame({
        "model": ["xgb"] * 4 + ["other"] * 2,
        "feature": ["Cells_A", "Cells_B__mean", "Nuclei_AreaShape_EquivalentDiameter", "Cells_D",
                    "Cells_D", "Cells_A"],
        "gain": [3.0, 2.0, 0.5, 0.0, 4.0, 1.0]})
    names = ["Metadata_ImageNumber", "Metadata_ObjectNumber", "Metadata_sample_id",
             "Metadata_Location_Center_X", "Metadata_Location_Center_Y", "Cells_A", "Cells_B",
             "Cells_D", "Nuclei_AreaShape_EquivalentDiameter", "Cells_E"]
    assert example_columns(importance, names, n_features=2) == [
        "Metadata_sample_id", "Metadata_Location_Center_X", "Metadata_Location_Center_Y",
        "Nuclei_AreaShape_EquivalentDiameter", "Cells_A", "Cells_B", "Cells_D"]
    assert example_columns(importance.assign(gain=0.0), names) == []  # nothing to show, nothing read


def test_the_report_says_how_the_cell_table_was_read():
    from cellcompare.reports.sections import cell_table_statement

    capped = {"cells_per_image": 5, "seed": 3, "n_cells": 2000,
              "reads": [{"purpose": "models", "rows": 480, "images": 100, "columns": "all"}]}
    assert cell_table_statement(capped) == ("at most 5 cells per image, chosen with seed 3: 480 cells "
                                            "of 100 images for models (2,000 cells extracted)")
    unread = {"cells_per_image": None, "seed": None, "n_cells": 2000, "reads": []}
    assert cell_table_statement(unread).startswith("not read: nothing in this run needed per-cell rows")
    assert cell_table_statement(None) is None  # results written before the record existed
