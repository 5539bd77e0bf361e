"""Models exported by a compare run give, when served, the probabilities comparison computed.

One tiny run on synthetic Cell Painting sites (8-bit PNGs, 6 channels) with a channel subset:
a deep model (float image in [0, 1], channels DNA + RNA) and a classical model (features with
the stored FeatureConfig). ``cellcompare predict`` and the HTTP endpoint, fed the same training
images, must return what the comparison adapters return for the exported model.
"""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys

import httpx
import numpy as np
import pytest
import tifffile

from cellcompare.classical import load_model
from cellcompare.comparison import build_adapter, load_config, run
from cellcompare.datasets import open_dataset
from cellcompare.datasets.synth import make_cellpainting
from cellcompare.deep import DeepClassifier
from cellcompare.features import load_table
from tests.test_serve_http import running_server

CHANNELS = ["DNA", "RNA"]  # positions 0 and 3 of the RxRx1 channels


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A finished compare run exporting ``smallcnn`` and ``linear_svm``."""
    root = tmp_path_factory.mktemp("parity")
    data = make_cellpainting(root / "data", classes=2, per_class=6, size=64, plates=2, seed=3)
    config = {"dataset": {"path": str(data), "layout": "rxrx1", "channels": CHANNELS},
              "features": {"preset": "minimal", "dna_channel": "DNA", "cyto_channel": "RNA",
                           "objects": ["Nuclei"]},
              "models": [{"name": "smallcnn", "params": {"weights": "none", "image_size": 32,
                                                         "epochs": 2, "batch_size": 4,
                                                         "amp": False, "progress": False,
                                                         "val_fraction": 0.0}},
                         {"name": "smallcnn", "label": "smallcnn_ssl",  # SimCLR first (deep.ssl)
                          "params": {"weights": "ssl", "image_size": 32, "epochs": 2, "batch_size": 4,
                                     "amp": False, "progress": False, "val_fraction": 0.0,
                                     "ssl": {"epochs": 1, "batch_size": 4}}},
                         {"name": "linear_svm", "params": {"tune": False}}],
              "folds": {"n_splits": 2, "group_column": "group"}, "top_k": 2, "seed": 0,
              "report": False, "export_models": ["smallcnn", "smallcnn_ssl", "linear_svm"],
              "output": str(root / "results")}
    path = root / "config.json"  # JSON is YAML
    path.write_text(json.dumps(config))
    out = run(load_config(path))
    ds = open_dataset(data, layout="rxrx1")
    return out, ds


def comparison_proba(out, ds, label):
    """What comparison's adapter computes with the exported model, per training image."""
    from cellcompare.comparison.adapters import FoldData
    from cellcompare.comparison.task import ImageTask

    model_dir = out / "models" / label
    classes = json.loads((out / "metrics.json").read_text())["classes"]
    task = ImageTask(ds.index, tuple(classes), image_table=load_table(out / "features", level="image"))
    data = FoldData(sample_ids=np.asarray(ds.ids, dtype=str), y=np.asarray(ds.labels, dtype=str),
                    groups=np.asarray(ds.groups, dtype=str), dataset=ds, task=task)
    if label.startswith("smallcnn"):
        adapter = build_adapter("smallcnn", params={"channels": [ds.channel_names.index(c)
                                                                  for c in CHANNELS]})
        adapter.classifier_ = DeepClassifier.load(model_dir / "model")
    else:
        adapter = build_adapter("linear_svm")
        adapter.estimator_ = load_model(model_dir / "model")
    return dict(zip(data.sample_ids, adapter.predict_proba(data))), list(data.classes)


def site_tiff(sample) -> bytes:
    """One site's 6 channel PNGs as one multi-page 8-bit TIFF (what a user would upload)."""
    buf = io.BytesIO()
    tifffile.imwrite(buf, sample.image)
    return buf.getvalue()


@pytest.mark.slow
@pytest.mark.parametrize("label", ["smallcnn", "smallcnn_ssl", "linear_svm"])
def test_predict_cli_equals_comparison_path(exported, tmp_path, label):
    out, ds = exported
    expected, classes = comparison_proba(out, ds, label)
    spec = json.loads((out / "models" / label / "serve.json").read_text())
    assert spec["input"]["channels"] == list(ds.channel_names)
    if label.startswith("smallcnn"):
        assert spec["channel_index"] == [0, 3]
    if label == "smallcnn_ssl":  # fine-tuned from a backbone pretrained on the export's images
        weights = json.loads((out / "models" / label / "model" / "deep_model.json").read_text())["weights_info"]
        assert weights["source"] == "ssl" and len(weights["sha256"]) == 64
    csv_path = tmp_path / "p.csv"
    subprocess.run([sys.executable, "-m", "cellcompare", "predict", str(out / "models" / label),
                    str(ds.root), "--top", "2", "--out", str(csv_path)], check=True,
                   capture_output=True, cwd=tmp_path, timeout=300)
    with open(csv_path) as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == len(ds) and all(r["error"] == "" for r in rows)
    by_site = {}
    for row in rows:
        sid = next(s for s in ds.ids if row["path"] == s or row["path"] in ds.get(s).paths)
        by_site[sid] = {row["top1_class"]: float(row["top1_proba"]),
                        row["top2_class"]: float(row["top2_proba"])}
    for sid, proba in expected.items():
        assert by_site[sid] == pytest.approx(dict(zip(classes, proba)), abs=2e-6), sid


@pytest.mark.slow
@pytest.mark.parametrize("label", ["smallcnn", "linear_svm"])
def test_http_endpoint_equals_comparison_path(exported, label):
    out, ds = exported
    expected, classes = comparison_proba(out, ds, label)
    with running_server(out / "models" / label) as url:
        for sid in list(ds.ids)[:3]:
            body = httpx.post(f"{url}/predict", timeout=120, params={"top": 2},
                              files={"file": ("site.tif", site_tiff(ds.get(sid)))}).json()
            got = {t["class"]: t["probability"] for t in body["top"]}
            assert got == pytest.approx(dict(zip(classes, expected[sid])), abs=1e-6), sid
