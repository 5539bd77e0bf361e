"""serve/: MODEL_DIR export/load, offline predict CSV, safe renaming and undo."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from skimage.draw import disk

from cellcompare import serve
from cellcompare.datasets import Sample
from cellcompare.features import FeatureConfig, extract_sample

ROOT = Path(__file__).resolve().parents[1]


def disk_image(radius: int, seed: int, channels: int = 1) -> np.ndarray:
    """uint16 (C, 64, 64): noise plus a bright disk of ``radius``."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 500, (channels, 64, 64)).astype(np.uint16)
    rr, cc = disk((32, 32), radius, shape=(64, 64))
    img[:, rr, cc] += 30000
    return img


def train_classical(out: Path, classes=("big", "small"), model: str = "svm") -> Path:
    """Fit an SVM (or ``model``) on whole-object features of disks (big radius 20, small 8)."""
    from cellcompare import classical
    cfg = FeatureConfig(preset="minimal", whole_object=True)
    rows, y = [], []
    for i in range(12):
        label = classes[i % 2]
        s = Sample(id=f"s{i}", image=disk_image(20 if i % 2 == 0 else 8, i),
                   metadata={"channel_names": ["Gray"]})
        rows.append(extract_sample(s, cfg)[1])
        y.append(label)
    X = pd.concat(rows, ignore_index=True)
    est = classical.make_classifier(model, tune=False).fit(X, np.array(y))
    return serve.export_model(est, out, channels=["Gray"], feature_config=cfg, dtype="uint16")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return train_classical(tmp_path_factory.mktemp("model") / "m")


def write_inputs(folder: Path) -> dict[str, str]:
    folder.mkdir(parents=True, exist_ok=True)
    truth = {}
    for i, (radius, label) in enumerate([(20, "big"), (8, "small"), (19, "big"), (9, "small")]):
        name = f"embryo_{i:03d}.tif"
        tifffile.imwrite(folder / name, disk_image(radius, 100 + i)[0])
        truth[name] = label
    return truth


def test_serve_json_records_kind_classes_and_input(model_dir):
    meta = json.loads((model_dir / "serve.json").read_text())
    assert meta["kind"] == "classical"
    assert meta["classes"] == ["big", "small"]
    assert meta["input"]["channels"] == ["Gray"]
    assert meta["feature_config"]["whole_object"] is True


def test_missing_serve_json_is_a_model_dir_error(tmp_path):
    with pytest.raises(serve.ModelDirError, match="serve.json"):
        serve.load_predictor(tmp_path)


def test_predict_inputs_ranks_true_class_first_and_reports_bad_file(model_dir, tmp_path):
    truth = write_inputs(tmp_path / "in")
    (tmp_path / "in" / "broken.tif").write_bytes(b"not a tiff at all")
    rows = serve.predict_inputs(serve.load_predictor(model_dir), [str(tmp_path / "in")], k=2)
    by_name = {Path(r.path).name: r for r in rows}
    broken = by_name["broken.tif"]
    # our wrapper names the file and the decoder's own error type; tifffile's wording stays free
    assert broken.error.startswith(
        f"UnreadableImageError: cannot decode image {tmp_path / 'in' / 'broken.tif'}: TiffFileError: ")
    assert broken.error.endswith("(expected a readable .tif file)")
    assert broken.top == ()
    for name, label in truth.items():
        assert by_name[name].error == ""
        assert by_name[name].top[0][0] == label
        assert sum(p for _, p in by_name[name].top) == pytest.approx(1.0)


def test_wrong_channel_count_is_an_error_row(model_dir, tmp_path):
    tifffile.imwrite(tmp_path / "two.tif", disk_image(20, 0, channels=2))
    rows = serve.predict_inputs(serve.load_predictor(model_dir), [str(tmp_path / "two.tif")])
    assert "2 channel(s)" in rows[0].error and rows[0].top == ()


@pytest.mark.parametrize("name, expected", [("../../etc", "etc"), ("a/b\\c", "a-b-c"),
                                            ("st\x00age\n4", "st-age-4"), ("..", "class")])
def test_sanitize_removes_path_tricks(name, expected):
    assert serve.sanitize(name) == expected


def test_new_name_appends_top3():
    top = [("stage4", 0.811), ("stage5", 0.12), ("stage3", 0.04)]
    assert serve.new_name(Path("embryo_017.tif"), top) == \
        "embryo_017__stage4-0.81_stage5-0.12_stage3-0.04.tif"


def test_plan_skips_existing_target(tmp_path):
    (tmp_path / "a.tif").write_bytes(b"x")
    (tmp_path / "a__c-1.00.tif").write_bytes(b"y")
    rows = [serve.PredictionRow(str(tmp_path / "a.tif"), (("c", 1.0),), files=(str(tmp_path / "a.tif"),))]
    assert serve.plan_renames(rows) == []
    (tmp_path / "a__c-1.00.tif").unlink()
    assert serve.plan_renames(rows) == [(tmp_path / "a.tif", tmp_path / "a__c-1.00.tif")]


def test_cli_predict_rename_and_undo_round_trip(tmp_path):
    model = train_classical(tmp_path / "m", classes=("../up", "a/b"))
    truth = write_inputs(tmp_path / "in")
    before = sorted(p.name for p in (tmp_path / "in").iterdir())
    cmd = [sys.executable, "-m", "cellcompare", "predict", str(model), str(tmp_path / "in" / "*.tif"),
           "--out", str(tmp_path / "p.csv"), "--rename"]
    dry = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True)
    assert "dry run" in dry.stdout
    assert sorted(p.name for p in (tmp_path / "in").iterdir()) == before
    subprocess.run(cmd + ["--yes"], cwd=ROOT, capture_output=True, text=True, check=True)
    after = sorted(p.name for p in (tmp_path / "in").iterdir())
    assert len(after) == len(truth) and not set(after) & set(before)
    assert all("__up-" in n or "__a-b-" in n for n in after)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "m", "p.csv", "p.undo.json"]
    with open(tmp_path / "p.csv") as fh:
        table = list(csv.DictReader(fh))
    assert [r["top1_class"] for r in table] == [("../up" if v == "big" else "a/b") for v in
                                                 (truth[k] for k in sorted(truth))]
    subprocess.run([sys.executable, "-m", "cellcompare", "undo", str(tmp_path / "p.undo.json")],
                   cwd=ROOT, capture_output=True, text=True, check=True)
    assert sorted(p.name for p in (tmp_path / "in").iterdir()) == before


def test_undo_refuses_to_overwrite(tmp_path):
    (tmp_path / "new.tif").write_bytes(b"n")
    (tmp_path / "old.tif").write_bytes(b"o")
    manifest = tmp_path / "m.json"
    manifest.write_text(json.dumps({"renames": [{"old": str(tmp_path / "old.tif"),
                                                 "new": str(tmp_path / "new.tif")}]}))
    restored, problems, already = serve.undo(manifest)
    assert restored == 0 and already == 0 and "not overwriting" in problems[0]
    assert (tmp_path / "old.tif").read_bytes() == b"o"


def _small_deep_config():
    from cellcompare import deep
    return deep.DeepConfig(arch="smallcnn", weights="none", image_size=32, epochs=1, batch_size=8,
                           device="cpu", amp=False, progress=False, val_fraction=0.0)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_served_deep_model_gets_the_scaled_image_it_was_trained_on(tmp_path, dtype):
    from cellcompare import deep
    scale = np.iinfo(dtype).max / np.iinfo(np.uint16).max
    raw = [(disk_image(20 if i % 2 else 8, i) * scale).astype(dtype) for i in range(8)]
    inputs = [deep.sample_input(Sample(id=f"s{i}", image=im)) for i, im in enumerate(raw)]
    assert max(float(x.max()) for x in inputs) <= 1.0  # trained on [0, 1], as comparison does
    clf = deep.DeepClassifier(_small_deep_config()).fit(inputs, ["big" if i % 2 else "small" for i in range(8)])
    model = serve.export_model(clf, tmp_path / "m", channels=["Gray"], dtype=np.dtype(dtype).name)
    tifffile.imwrite(tmp_path / "a.tif", raw[0][0])
    row = serve.predict_inputs(serve.load_predictor(model), [str(tmp_path / "a.tif")], k=2)[0]
    expected = clf.predict_proba([inputs[0]])[0]
    raw_proba = clf.predict_proba([raw[0].astype(np.float32)])[0]  # what serving raw pixels gave
    assert row.error == ""
    assert dict(row.top) == pytest.approx(dict(zip(clf.classes_, expected)), abs=1e-6)
    assert not np.allclose(expected, raw_proba, atol=1e-3)


def test_served_deep_model_uses_its_channel_subset(tmp_path):
    from cellcompare import deep
    raw = [np.concatenate([disk_image(4, 50 + i), disk_image(20 if i % 2 else 8, i)]) for i in range(8)]
    inputs = [deep.sample_input(Sample(id=f"s{i}", image=im), [1]) for i, im in enumerate(raw)]
    clf = deep.DeepClassifier(_small_deep_config()).fit(inputs, ["big" if i % 2 else "small" for i in range(8)])
    model = serve.export_model(clf, tmp_path / "m", channels=["Marker", "Gray"], channel_index=[1])
    assert json.loads((model / "serve.json").read_text())["channel_index"] == [1]
    classes, proba = serve.load_predictor(model).predict_proba([Sample(id="q", image=raw[3])])
    np.testing.assert_allclose(proba[0], clf.predict_proba([inputs[3]])[0], atol=1e-6)
    with pytest.raises(serve.ModelDirError, match="channel_index"):
        serve.export_model(clf, tmp_path / "bad", channels=["Gray"], channel_index=[1])

def test_class_folder_layout_and_missing_file_give_one_row_each(model_dir, tmp_path):
    for label, radius in (("a", 20), ("b", 8)):
        (tmp_path / "ds" / label).mkdir(parents=True)
        for i in range(2):
            tifffile.imwrite(tmp_path / "ds" / label / f"{label}{i}.tif", disk_image(radius, i)[0])
    rows = serve.predict_inputs(serve.load_predictor(model_dir),
                                [str(tmp_path / "ds"), str(tmp_path / "nope.tif")])
    assert [Path(r.path).name for r in rows] == ["a0.tif", "a1.tif", "b0.tif", "b1.tif", "nope.tif"]
    assert [r.top[0][0] for r in rows[:4]] == ["big", "big", "small", "small"]
    assert "does not exist" in rows[4].error


def test_empty_folder_is_an_error_row(model_dir, tmp_path):
    (tmp_path / "empty").mkdir()
    rows = serve.predict_inputs(serve.load_predictor(model_dir), [str(tmp_path / "empty")])
    assert len(rows) == 1 and rows[0].error and rows[0].top == ()


def test_cell_granularity_model_averages_cells_per_image(tmp_path):
    from cellcompare import classical
    cfg = FeatureConfig(preset="minimal", whole_object=True)
    cells = pd.concat([extract_sample(Sample(id=f"s{i}", image=disk_image(20 if i % 2 else 8, i)),
                                      cfg, image_number=i + 1)[0] for i in range(12)],
                      ignore_index=True)
    y = np.where(cells["Metadata_sample_id"].str[1:].astype(int) % 2 == 1, "big", "small")
    est = classical.make_classifier("svm", granularity="cell", tune=False).fit(cells, y)
    model = serve.export_model(est, tmp_path / "m", channels=["C1"], feature_config=cfg)
    query = [Sample(id="q", image=disk_image(20, 50)), Sample(id="r", image=disk_image(8, 51))]
    classes, proba = serve.load_predictor(model).predict_proba(query)
    table = pd.concat([extract_sample(s, cfg, image_number=i + 1)[0] for i, s in enumerate(query)])
    ids, direct = est.predict_image_proba(table)
    assert classes == ("big", "small") and list(ids) == ["q", "r"]
    np.testing.assert_allclose(proba, direct)


def test_csv_says_how_each_image_was_normalised(model_dir, tmp_path):
    write_inputs(tmp_path / "in")
    rows = serve.predict_inputs(serve.load_predictor(model_dir), [str(tmp_path / "in")])
    out = serve.write_csv(rows, tmp_path / "p.csv", 2)
    with open(out) as fh:
        table = list(csv.DictReader(fh))
    assert {r["normalization"] for r in table} == {"standard: no plate statistics needed"}


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="a GPU is present here")
def test_deep_model_on_a_missing_gpu_is_refused_at_load(tmp_path):
    from cellcompare import deep
    images = [deep.sample_input(Sample(id=f"s{i}", image=disk_image(20 if i % 2 else 8, i)))
              for i in range(4)]
    clf = deep.DeepClassifier(_small_deep_config()).fit(images, ["big", "small"] * 2)
    model = serve.export_model(clf, tmp_path / "m", channels=["Gray"])
    with pytest.raises(deep.ConfigError, match="device 'cuda' requested"):
        serve.load_predictor(model, device="cuda")
    auto = serve.load_predictor(model, device="auto").model.model_
    assert next(auto.parameters()).device.type == "cpu"                  # no GPU: the CPU
