"""Deep models on single-cell crops: image probability = mean of its cells'; class weights."""

import numpy as np
import pandas as pd
import pytest
import torch

from cellcompare.comparison.adapters import FoldData, ModelInputError, build_adapter
from cellcompare.comparison.task import CellTask, ImageTask
from cellcompare.deep import ConfigError, DeepConfig, ImageInputError
from cellcompare.deep.classifier import class_weights
from cellcompare.deep.crop_cache import CropCache
from tests.test_deep_crops import SEGMENT, _Dataset, _site

TINY = {"weights": "none", "image_size": 16, "epochs": 1, "batch_size": 4, "amp": False,
        "progress": False, "device": "cpu", "val_fraction": 0.0, "normalize": "group"}


def _fold(ds, ids, labels, groups, task=ImageTask):
    index = pd.DataFrame({"sample_id": ids, "label": labels, "group": groups})
    return FoldData(sample_ids=np.array(ids), y=np.array(labels), groups=np.array(groups), dataset=ds,
                    task=task(index, ("a", "b")))


@pytest.fixture
def crop_data(tmp_path):
    images = {"a1": _site([(16, 16), (40, 44)]), "a2": _site([(20, 40)]),
              "b1": _site([(30, 30), (12, 48)], radius=8), "b2": _site([(44, 20)], radius=8),
              "empty": np.zeros((2, 64, 64), np.uint8)}
    ds = _Dataset(images)
    return ds, CropCache.build(tmp_path / "crops", ds, SEGMENT, crop_size=24, progress=False)


def test_image_probability_is_the_mean_of_its_cells(crop_data):
    ds, cache = crop_data
    model = build_adapter("smallcnn", granularity="cell", params=dict(TINY), seed=0, crops=cache)
    model.fit(_fold(ds, ["a1", "a2", "b1", "b2"], ["a", "a", "b", "b"], ["p1", "p1", "p1", "p1"]))
    assert model.classifier_.config.crop_size == 24  # the size actually cut is recorded
    test = _fold(ds, ["b1", "empty", "a1"], ["b", "a", "a"], ["p2", "p2", "p2"])
    proba = model.predict_proba(test)
    sids, crops, cells = model.cell_proba_
    assert proba.shape == (3, 2) and len(crops) == 4  # b1 and a1 have two cells each
    np.testing.assert_allclose(proba[0], cells[sids == "b1"].mean(0), rtol=1e-6)
    np.testing.assert_allclose(proba[2], cells[sids == "a1"].mean(0), rtol=1e-6)
    np.testing.assert_allclose(proba[1], [0.5, 0.5])  # no cells: the training prior
    assert any("1 test images have no crop" in n for n in model.notes)


def test_cell_granularity_without_crops_is_an_error(crop_data):
    ds, _ = crop_data
    model = build_adapter("smallcnn", granularity="cell", params=dict(TINY), seed=0)
    with pytest.raises(ModelInputError, match="crop cache"):
        model.fit(_fold(ds, ["a1", "b1"], ["a", "b"], ["p1", "p1"]))


def test_balanced_and_explicit_class_weights():
    encoded = np.array([0] * 9 + [1] * 3)
    np.testing.assert_allclose(class_weights(encoded, np.array(["a", "b"]), "balanced"), [12 / 18, 12 / 6])
    np.testing.assert_allclose(class_weights(encoded, np.array(["a", "b"]), {"b": 4}), [1.0, 4.0])
    assert class_weights(encoded, np.array(["a", "b"]), None) is None
    with pytest.raises(ImageInputError, match="'c'"):
        class_weights(encoded, np.array(["a", "b"]), {"c": 2})


@pytest.mark.parametrize("bad", ["balance", {"a": 0}, {"a": "x"}, []])
def test_invalid_class_weight_is_a_config_error(bad):
    with pytest.raises(ConfigError, match="class_weight"):
        DeepConfig(arch="smallcnn", weights="none", class_weight=bad)


def test_the_loss_receives_the_class_weights(monkeypatch):
    from cellcompare.deep import DeepClassifier
    from cellcompare.deep import train as train_module

    seen = []
    real = train_module.nn.CrossEntropyLoss

    def spy(*args, **kwargs):
        seen.append(kwargs.get("weight"))
        return real(*args, **kwargs)

    monkeypatch.setattr(train_module.nn, "CrossEntropyLoss", spy)
    images = [np.full((1, 8, 8), v, np.float32) for v in (0.1, 0.2, 0.3, 0.9)]
    config = DeepConfig(arch="smallcnn", weights="none", image_size=8, epochs=1, batch_size=4, amp=False,
                        progress=False, device="cpu", val_fraction=0.0, class_weight="balanced")
    DeepClassifier(config).fit(images, ["a", "a", "a", "b"])
    torch.testing.assert_close(seen[0].cpu(), torch.tensor([4 / 6, 2.0]))


def test_cell_level_folds_predict_one_row_per_cell(crop_data):
    ds, cache = crop_data
    model = build_adapter("smallcnn", granularity="cell", params=dict(TINY, normalize="image"), seed=0,
                          crops=cache)

    def cells(ids, labels):
        return _fold(ds, ids, labels, ["g"] * len(ids), task=CellTask)

    model.fit(cells(["a1#1", "a1#2", "b1#1", "b1#2"], ["a", "b", "a", "b"]))
    proba = model.predict_proba(cells(["b2#1", "a2#1", "a2#9"], ["a", "b", "a"]))
    assert proba.shape == (3, 2)
    sids, _, per_cell = model.cell_proba_
    assert list(sids) == ["b2#1", "a2#1"]  # a2 has no object 9: it gets the prior
    np.testing.assert_allclose(proba[:2], per_cell, rtol=1e-6)
    np.testing.assert_allclose(proba[2], [0.5, 0.5])


def _cell_inputs():
    from cellcompare.deep.cells import CellInputs

    rng = np.random.default_rng(0)
    crops = rng.random((6, 2, 12, 12)).astype(np.float32)
    crops[3:] *= 3  # the second plate is three times as bright
    images = np.array(["i1", "i1", "i2", "i3", "i3", "i4"])
    groups = np.array(["p1", "p1", "p1", "p2", "p2", "p2"])
    return CellInputs(crops, np.arange(6), images, groups)


def test_the_deep_door_averages_its_cells_per_image():
    from cellcompare.deep import DeepClassifier

    cells = _cell_inputs()
    config = DeepConfig(arch="smallcnn", image_size=12, epochs=1, batch_size=6,
                        **{k: v for k, v in TINY.items() if k not in ("image_size", "epochs", "batch_size")})
    clf = DeepClassifier(config).fit_cells(cells, ["a", "a", "a", "b", "b", "b"])
    per_cell = clf.predict_cell_proba(cells)
    ids, per_image = clf.predict_image_proba(cells)
    assert ids.tolist() == ["i1", "i2", "i3", "i4"]
    np.testing.assert_allclose(per_image[0], per_cell[:2].mean(0))
    np.testing.assert_allclose(per_image[2], per_cell[3:5].mean(0))
    np.testing.assert_allclose(per_image[3], per_cell[5])


def test_group_normalisation_removes_a_plate_gain():
    cells = _cell_inputs()
    scaled = cells.scaled("group")
    plate_means = [np.mean([scaled[i].mean((1, 2)) for i in rows], axis=0) for rows in ([0, 1, 2], [3, 4, 5])]
    np.testing.assert_allclose(plate_means, np.ones((2, 2)), rtol=1e-5)  # each plate's mean is 1
    assert np.allclose(cells.scaled("none")[3], cells.crops[3])


def test_fit_cells_keeps_at_most_cells_per_image(monkeypatch):
    from cellcompare.deep import DeepClassifier

    seen = {}

    def spy(self, images, y):
        seen["n"], seen["y"] = len(images), list(y)
        return self

    monkeypatch.setattr(DeepClassifier, "fit", spy)
    config = DeepConfig(arch="smallcnn", weights="none", cells_per_image=1)
    DeepClassifier(config).fit_cells(_cell_inputs(), ["a", "a", "a", "b", "b", "b"])
    assert seen == {"n": 4, "y": ["a", "a", "b", "b"]}  # one crop of each of the 4 images
    with pytest.raises(ImageInputError, match="6 cell crops but 2 labels"):
        DeepClassifier(config).fit_cells(_cell_inputs(), ["a", "b"])


def test_a_normalised_view_is_computed_once_per_mode(monkeypatch):
    import cellcompare.deep.cells as cells_module

    calls = []
    real = cells_module.group_scales
    monkeypatch.setattr(cells_module, "group_scales", lambda *a, **k: calls.append(1) or real(*a, **k))
    cells = _cell_inputs()
    first = cells.scaled("group")
    assert cells.scaled("group") is first and len(calls) == 1  # prediction and Grad-CAM share it
    cells.scaled("image")
    assert len(calls) == 2
    from cellcompare.deep.crops import CropError

    with pytest.raises(CropError, match="normalize must be one of"):
        cells.scaled("plate")
