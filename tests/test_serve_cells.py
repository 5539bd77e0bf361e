"""A cell-crop deep model (``normalize: group``), exported by a compare run, serves what the
comparison computed: a whole plate sent as one batch gets comparison's probabilities to 1e-6."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pandas as pd
import pytest

from cellcompare.comparison import load_config, run
from cellcompare.comparison.adapters import FoldData, build_adapter
from cellcompare.comparison.task import ImageTask
from cellcompare.datasets import Sample, open_dataset
from cellcompare.datasets.synth import make_cellpainting
from cellcompare.deep import DeepClassifier
from cellcompare.deep.crop_cache import CropCache
from cellcompare.serve import load_predictor
from tests.test_serve_http import post, post_batch, running_server, tiff_bytes

PARAMS = {"weights": "none", "image_size": 16, "epochs": 1, "batch_size": 8, "amp": False,
          "progress": False, "val_fraction": 0.0, "normalize": "group", "crop_size": 24}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A compare run exporting a smallcnn cell model; comparison's probabilities of one plate."""
    root = tmp_path_factory.mktemp("cells")
    data = make_cellpainting(root / "data", classes=2, per_class=4, size=64, plates=2, seed=3)
    config = {"dataset": {"path": str(data), "layout": "rxrx1", "channels": ["DNA", "RNA"]},
              "features": {"preset": "minimal", "dna_channel": "DNA", "cyto_channel": "RNA"},
              "models": [{"name": "smallcnn", "granularity": "cell", "params": PARAMS}],
              "folds": {"n_splits": 2, "group_column": "group"}, "top_k": 2, "seed": 0,
              "report": False, "export_models": ["smallcnn"], "output": str(root / "results")}
    path = root / "config.json"
    path.write_text(json.dumps(config))
    out = run(load_config(path))
    model_dir = out / "models" / "smallcnn"
    ds = open_dataset(data, layout="rxrx1")
    folds = pd.read_csv(out / "folds.csv", dtype=str)
    plate = folds[folds.group == folds.group.iloc[0]]
    adapter = build_adapter("smallcnn", granularity="cell", params={**PARAMS, "channels": [0, 3]},
                            crops=CropCache(next((out / "crops").iterdir())))
    adapter.classifier_ = DeepClassifier.load(model_dir / "model")
    adapter.prior_ = np.full(2, 0.5)
    fold = FoldData(sample_ids=plate.sample_id.to_numpy(), y=plate.label.to_numpy(),
                    groups=plate.group.to_numpy(), dataset=ds,
                    task=ImageTask(ds.index, tuple(ds.classes)))
    return model_dir, ds, plate, adapter.predict_proba(fold)


def test_export_stores_the_training_plates_channel_means(exported):
    model_dir, ds, plate, _ = exported
    spec = json.loads((model_dir / "serve.json").read_text())
    assert spec["granularity"] == "cell" and spec["feature_config"]["dna_channel"] == "DNA"
    stored = json.loads((model_dir / "model" / "deep_model.json").read_text())["group_means"]
    assert sorted(stored) == sorted(set(ds.groups))
    assert all(len(m) == 2 and all(v > 0 for v in m) for m in stored.values())  # DNA, RNA


def test_batch_of_a_training_plate_gives_comparison_probabilities(exported):
    model_dir, ds, plate, expected = exported
    samples = [ds.get(s) for s in plate.sample_id]
    classes, served = load_predictor(model_dir).predict_proba(samples)
    assert list(classes) == list(ds.classes)
    np.testing.assert_allclose(served, expected, rtol=0, atol=1e-6)


def test_http_batch_of_a_training_plate_gives_comparison_probabilities(exported):
    model_dir, ds, plate, expected = exported
    group = plate.group.iloc[0]
    files = [(f"{s}.tif", tiff_bytes(ds.get(s).image)) for s in plate.sample_id]
    with running_server(model_dir) as url:
        body = post_batch(url, files, group=group, params={"top": 2}).json()
        lone = post(url, files[0][1], params={"top": 2}).json()
    assert body["group"] == group and body["n_failed"] == 0
    got = np.array([[{t["class"]: t["probability"] for t in r["top"]}[c] for c in ds.classes]
                    for r in body["results"]])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    assert {r["normalization"]["statistics"] for r in body["results"]} == {"training_plate"}
    assert lone["normalization"] == {"method": "group", "statistics": "reference", "group": None,
                                     "n_images": 1, "reference_plates": 2}


def test_unseen_plate_name_uses_the_batch_statistics(exported):
    """The plate under a name the model never saw: its own crops' means, as a test plate in
    comparison (the same crops, so the same probabilities); one image alone: the reference."""
    model_dir, ds, plate, expected = exported
    predictor = load_predictor(model_dir)
    items = [(s, (lambda s=s: ds.get(s))) for s in plate.sample_id]
    outcomes = predictor.predict_batch(items, group="a-new-plate", min_plate_images=len(items))
    assert {o.normalization.statistics for o in outcomes} == {"batch"}
    np.testing.assert_allclose(np.stack([o.proba for o in outcomes]), expected, rtol=0, atol=1e-6)
    fewer = predictor.predict_batch(items[:1], group="a-new-plate", min_plate_images=len(items))
    assert fewer[0].normalization.statistics == "reference"


def test_lone_site_is_the_mean_over_the_training_plates(exported):
    model_dir, ds, plate, _ = exported
    predictor = load_predictor(model_dir)
    site = ds.get(plate.sample_id.iloc[0])
    lone = predictor.predict_batch([("site", lambda: Sample(id="x", image=site.image))])[0]
    per_plate = [predictor.predict_batch([("site", lambda: site)], group=g)[0].proba
                 for g in sorted(set(ds.groups))]
    np.testing.assert_allclose(lone.proba, np.mean(per_plate, axis=0), rtol=0, atol=1e-12)
    assert lone.normalization.statistics == "reference"
