"""Group-dependent normalisations keep their training plates' statistics with the model, and a
row or crop without a plate is normalised by them (never by NaN statistics)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from cellcompare.classical import MissingMetadataError, NonFiniteFeaturesError, make_classifier
from cellcompare.classical.preprocess import TableScaler
from cellcompare.deep import DeepClassifier, DeepConfig
from cellcompare.deep.cells import CellInputs
from cellcompare.deep.crops import CROP_DTYPE
from tests.test_deep_cells import TINY, _cell_inputs


def plates_table(seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Two classes on three plates; plate ``k`` adds ``10 k`` to every feature."""
    rng = np.random.default_rng(seed)
    rows, labels = [], []
    for plate in range(3):
        for i in range(8):
            label = "hi" if i % 2 else "lo"
            values = rng.normal(2.0 if label == "hi" else 0.0, 0.3, 3) + 10 * plate
            rows.append({"f1": values[0], "f2": values[1], "f3": values[2],
                         "Metadata_group": f"P{plate}", "Metadata_sample_id": f"P{plate}_{i}"})
            labels.append(label)
    return pd.DataFrame(rows), np.array(labels)


def test_a_row_without_plate_is_an_error_not_nan():
    table, _ = plates_table()
    scaler = TableScaler("plate_robust").fit(table)
    with pytest.raises(MissingMetadataError, match=r"1 of 2 rows have no plate \('Metadata_group'"):
        scaler.transform(table.head(2).assign(Metadata_group=["P0", None]))


def test_controls_read_the_plate_column_when_every_row_has_one():
    table = pd.DataFrame({"f": [1.0, 2.0], "Metadata_group": ["g", "g"],
                          "Metadata_Plate": ["A", "B"], "Metadata_WellType": ["x", "x"]})
    scaler = TableScaler("controls")
    assert scaler.plate_column(table) == "Metadata_Plate"
    assert scaler.plate_keys(table).tolist() == ["A", "B"]
    assert scaler.plate_keys(table.assign(Metadata_Plate=["A", None])).tolist() == ["g", "g"]
    assert TableScaler("standard").plate_keys(table).tolist() == [None, None]


def test_reference_proba_is_the_mean_over_the_training_plates():
    table, y = plates_table()
    est = make_classifier("linear_svm", normalize="plate_robust").fit(table, y)
    assert est.reference_plates() == ["P0", "P1", "P2"]
    lone = table.assign(Metadata_group=None)
    expected = np.mean([est.predict_proba(table.assign(Metadata_group=p)) for p in ("P0", "P1", "P2")],
                       axis=0)
    np.testing.assert_allclose(est.predict_reference_proba(lone), expected, rtol=0, atol=1e-12)
    assert (est.classes_[expected.argmax(1)] == y).mean() > 0.5      # it still tells hi from lo


def test_standard_scaling_needs_no_plate():
    table, y = plates_table()
    est = make_classifier("linear_svm").fit(table, y)
    assert est.reference_plates() == []
    np.testing.assert_array_equal(est.predict_reference_proba(table), est.predict_proba(table))


def test_nan_model_inputs_are_refused():
    table, y = plates_table()
    est = make_classifier("xgboost", normalize="plate_robust").fit(table, y)
    scaler = est.pipeline_.named_steps["scale"]
    center, scale = scaler.group_stats_["P1"]
    scaler.group_stats_["P1"] = (np.full_like(center, np.nan), scale)  # e.g. an empty plate's
    with pytest.raises(NonFiniteFeaturesError, match=r"8 of 24 rows \(\['P1_0', 'P1_1'"):
        est.predict_proba(table)


def tiny_config(**extra) -> DeepConfig:
    settings = {**TINY, "image_size": 12, "epochs": 1, "batch_size": 6, **extra}
    return DeepConfig(arch="smallcnn", **settings)


def test_fit_cells_stores_each_training_plates_channel_means(tmp_path):
    cells = _cell_inputs()
    clf = DeepClassifier(tiny_config(normalize="group")).fit_cells(cells, ["a"] * 3 + ["b"] * 3)
    crops = np.asarray(cells.crops, dtype=np.float64)
    assert sorted(clf.group_means_) == ["p1", "p2"]
    np.testing.assert_allclose(clf.group_means_["p2"], crops[3:].mean(axis=(2, 3)).mean(axis=0),
                               rtol=1e-12)
    loaded = DeepClassifier.load(clf.save(tmp_path / "m"))
    assert {k: v.tolist() for k, v in loaded.group_means_.items()} == \
        {k: v.tolist() for k, v in clf.group_means_.items()}        # JSON round-trips exactly
    stored = {"p1": loaded.group_means_["p1"], "p2": loaded.group_means_["p2"]}
    np.testing.assert_array_equal(loaded.predict_cell_proba(cells, means=stored),
                                  clf.predict_cell_proba(cells))     # the same plates: the same
    plain = DeepClassifier(tiny_config(normalize="none")).fit_cells(cells, ["a"] * 3 + ["b"] * 3)
    assert plain.group_means_ is None


def test_reference_crops_are_the_mean_over_the_training_plates():
    cells = _cell_inputs()
    clf = DeepClassifier(tiny_config(normalize="group")).fit_cells(cells, ["a"] * 3 + ["b"] * 3)
    lone = CellInputs(cells.crops, cells.rows, cells.images, np.full(6, "None"))
    ids, proba = clf.predict_reference_image_proba(lone)
    runs = [clf.predict_image_proba(lone, means={"None": clf.group_means_[g]})[1] for g in ("p1", "p2")]
    assert list(ids) == ["i1", "i2", "i3", "i4"]
    np.testing.assert_allclose(proba, np.mean(runs, axis=0), rtol=0, atol=1e-12)


def test_stored_means_divide_the_crops():
    cells = _cell_inputs()
    view = cells.scaled("group", means={"p1": np.array([2.0, 4.0])})
    np.testing.assert_allclose(view[0], np.asarray(cells.crops[0]) / np.array([2.0, 4.0])[:, None, None],
                               rtol=1e-6)
    np.testing.assert_allclose(view[3], cells.scaled("group")[3])    # p2: its own means


def test_served_crops_are_rounded_as_the_cache_stores_them():
    from cellcompare.datasets import Sample
    from cellcompare.features import FeatureConfig
    from tests.test_serve_offline import disk_image

    sample = Sample(id="s", image=disk_image(8, 1), metadata={"channel_names": ["Gray"]})
    cut = CellInputs.of_sample(sample, FeatureConfig(preset="minimal", whole_object=True),
                               crop_size=24, group="P7")
    assert cut.crops.dtype == CROP_DTYPE and len(cut) == 1
    assert cut.groups.tolist() == ["P7"] and cut.images.tolist() == ["s"]
