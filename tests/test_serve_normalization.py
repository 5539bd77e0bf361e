"""A plate-normalised classical model never predicts silently without its normalisation.

A tiny demo-shaped run (4 siRNA classes on 3 plates of synthetic Cell Painting sites, xgboost
on per-image features with ``normalize: plate_robust``, what ``make demo`` exports): its sites
sent one at a time as TIFFs (no plate: the reference statistics) score close to what the
dataset path (each site with its training plate) scores on the same sites, and do not all get
one answer; a whole plate sent as one batch under a new name is normalised by its own
statistics, as comparison normalised a test plate.
"""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile

from cellcompare import classical, serve
from cellcompare.classical.inputs import sample_features
from cellcompare.datasets import open_dataset
from cellcompare.datasets.synth import make_cellpainting
from cellcompare.features import FeatureConfig
from tests.test_serve_http import post, running_server, tiff_bytes

ROOT = Path(__file__).resolve().parents[1]
CONFIG = FeatureConfig(preset="minimal", dna_channel="DNA", cyto_channel="Actin", qc_samples=0)


@pytest.fixture(scope="module")
def demo_like(tmp_path_factory):
    """``(model_dir, dataset, feature table, fitted estimator)`` of the demo's exported model."""
    root = tmp_path_factory.mktemp("demo_like")
    data = make_cellpainting(root / "data", classes=4, per_class=6, size=128, plates=3, seed=0)
    ds = open_dataset(data, layout="rxrx1")
    table = pd.concat([sample_features(ds[i], CONFIG, channel_names=ds.channel_names,
                                       image_number=i + 1) for i in range(len(ds))],
                      ignore_index=True)
    est = classical.make_classifier("xgboost", normalize="plate_robust")
    est.fit(table, table["Metadata_label"].to_numpy())
    model = serve.export_model(est, root / "model", channels=ds.channel_names,
                               feature_config=CONFIG, dtype="uint8", train_table=table)
    return model, ds, table, est


def predict_cli(model: Path, inputs: list[str], out: Path, *extra: str) -> list[dict]:
    done = subprocess.run([sys.executable, "-m", "cellcompare", "predict", str(model), *inputs,
                           "--top", "4", "--out", str(out), *extra], cwd=ROOT,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    with open(out) as fh:
        return list(csv.DictReader(fh))


def site_of(ds, path: str) -> str:
    return next(s for s in ds.ids if path == s or path in ds.get(s).paths)


def test_lone_tiffs_score_like_the_dataset_path(demo_like, tmp_path):
    model, ds, _, _ = demo_like
    labels = dict(zip(ds.ids, ds.labels))
    rows = predict_cli(model, [str(ds.root)], tmp_path / "dataset.csv")
    dataset_top = {site_of(ds, r["path"]): r["top1_class"] for r in rows}
    assert all(r["error"] == "" and "statistics of training plate" in r["normalization"] for r in rows)
    lone_top, lone_proba, statistics = {}, set(), set()
    with running_server(model) as url:
        for sid in ds.ids:               # one request per site, a 6-channel TIFF without plate
            answer = post(url, tiff_bytes(ds.get(sid).image), f"{sid}.tif", params={"top": 4})
            assert answer.status_code == 200, answer.text
            body = answer.json()
            lone_top[sid] = body["top"][0]["class"]
            lone_proba.add(round(body["top"][0]["probability"], 6))
            normalization = body["normalization"]
            statistics.add((normalization["statistics"], normalization["reference_plates"]))
    dataset_acc = np.mean([dataset_top[s] == labels[s] for s in ds.ids])
    lone_acc = np.mean([lone_top[s] == labels[s] for s in ds.ids])
    assert statistics == {("reference", 3)}
    assert abs(lone_acc - dataset_acc) <= 0.10, (lone_acc, dataset_acc)
    assert len(set(lone_top.values())) > 1 and len(lone_proba) > 1   # not the prior every time


def test_whole_unseen_plate_uses_its_own_statistics(demo_like, tmp_path):
    """Plate 1's sites as TIFF files, ``predict --group NEW``: one batch of a plate the model
    never saw, normalised by its own median/MAD as comparison normalised a test plate."""
    model, ds, table, est = demo_like
    plate = sorted(set(ds.groups))[0]
    sites = [s for s, g in zip(ds.ids, ds.groups) if g == plate]
    folder = tmp_path / "plate"
    folder.mkdir()
    for sid in sites:
        tifffile.imwrite(folder / f"{sid}.tif", ds.get(sid).image)
    rows = predict_cli(model, [str(folder)], tmp_path / "p.csv", "--group", "NEW",
                       "--min-plate-images", str(len(sites)))
    as_test_plate = table[table["Metadata_group"] == plate].assign(Metadata_group="NEW")
    expected = dict(zip(as_test_plate["Metadata_sample_id"], est.predict_proba(as_test_plate)))
    for row in rows:
        sid = Path(row["path"]).stem
        got = {row[f"top{i}_class"]: float(row[f"top{i}_proba"]) for i in range(1, 5)}
        assert [got[c] for c in est.classes_] == pytest.approx(expected[sid], abs=2e-6), sid
        assert row["normalization"] == (f"plate_robust: statistics of the {len(sites)} images of "
                                        "plate NEW in this batch")


def test_too_few_images_of_an_unseen_plate_use_the_reference(demo_like):
    model, ds, table, est = demo_like
    predictor = serve.load_predictor(model)
    sid = ds.ids[0]
    outcome = predictor.predict_batch([(sid, lambda: ds.get(sid))], group="NEW")[0]
    assert outcome.normalization.statistics == "reference"
    row = table[table["Metadata_sample_id"] == sid]
    np.testing.assert_allclose(outcome.proba, est.predict_reference_proba(row)[0], atol=1e-12)
    own = predictor.predict_batch([(sid, lambda: ds.get(sid))], group=str(ds.groups[0]))[0]
    assert own.normalization.statistics == "training_plate"
    np.testing.assert_allclose(own.proba, est.predict_proba(row)[0], atol=1e-12)
