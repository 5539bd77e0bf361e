"""A cell-crop deep model, exported by a compare run, serves what the comparison computed."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd

from cellcompare.comparison import load_config, run
from cellcompare.comparison.adapters import FoldData, build_adapter
from cellcompare.comparison.task import ImageTask
from cellcompare.datasets import open_dataset
from cellcompare.datasets.synth import make_cellpainting
from cellcompare.deep import DeepClassifier
from cellcompare.deep.crop_cache import CropCache
from cellcompare.serve import load_predictor


def test_served_cell_model_equals_comparison(tmp_path):
    data = make_cellpainting(tmp_path / "data", classes=2, per_class=4, size=64, plates=2, seed=3)
    params = {"weights": "none", "image_size": 16, "epochs": 1, "batch_size": 8, "amp": False,
              "progress": False, "val_fraction": 0.0, "normalize": "group", "crop_size": 24}
    config = {"dataset": {"path": str(data), "layout": "rxrx1", "channels": ["DNA", "RNA"]},
              "features": {"preset": "minimal", "dna_channel": "DNA", "cyto_channel": "RNA"},
              "models": [{"name": "smallcnn", "granularity": "cell", "params": params}],
              "folds": {"n_splits": 2, "group_column": "group"}, "top_k": 2, "seed": 0,
              "report": False, "export_models": ["smallcnn"], "output": str(tmp_path / "results")}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    out = run(load_config(path))
    model_dir = out / "models" / "smallcnn"
    spec = json.loads((model_dir / "serve.json").read_text())
    assert spec["granularity"] == "cell" and spec["feature_config"]["dna_channel"] == "DNA"

    ds = open_dataset(data, layout="rxrx1")
    folds = pd.read_csv(out / "folds.csv", dtype=str)
    plate = folds[folds.group == folds.group.iloc[0]]
    adapter = build_adapter("smallcnn", granularity="cell", params={**params, "channels": [0, 3]},
                            crops=CropCache(next((out / "crops").iterdir())))
    adapter.classifier_ = DeepClassifier.load(model_dir / "model")
    adapter.prior_ = np.full(2, 0.5)
    fold = FoldData(sample_ids=plate.sample_id.to_numpy(), y=plate.label.to_numpy(),
                    groups=plate.group.to_numpy(), dataset=ds, task=ImageTask(ds.index, tuple(ds.classes)))
    expected = adapter.predict_proba(fold)

    samples = [ds.get(s) for s in plate.sample_id]
    classes, served = load_predictor(model_dir).predict_proba(samples)
    assert list(classes) == list(ds.classes)
    np.testing.assert_allclose(served, expected, atol=2e-3)  # crops are cached as float16
