"""Exploration summary and the ``python -m cellcompare.datasets`` command line."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import tifffile
from test_datasets_readers import ramp, write_png

from cellcompare.cli import main
from cellcompare.datasets import open_dataset
from cellcompare.datasets.explore import image_table, summarize, write_summary


def make_folders(root):
    for i in range(3):
        write_png(root / "a" / f"b1_{i}.png", ramp((10, 12), np.uint8))
    write_png(root / "b" / "b2_0.png", ramp((10, 12), np.uint8))
    (root / "c").mkdir()
    tifffile.imwrite(root / "c" / "b2_1.tif", ramp((20, 16), np.uint16))
    return open_dataset(root, group_pattern=r"^(b\d)_")


def test_summarize_counts(tmp_path):
    summary = summarize(make_folders(tmp_path))
    assert summary["layout"] == "folders" and summary["n_images"] == 5
    assert summary["class_counts"] == {"a": 3, "b": 1, "c": 1}
    assert summary["group_counts"] == {"b1": 3, "b2": 2}
    assert summary["image_sizes"] == {"10x12": 4, "20x16": 1}
    assert summary["dtypes"] == {"uint16": 1, "uint8": 4}
    assert summary["channel_counts"] == {"1": 5} and summary["channels"] == ["Gray"]
    json.dumps(summary)  # JSON-ready


def test_summary_lists_skipped(tmp_path):
    make_folders(tmp_path)
    (tmp_path / "empty").mkdir()
    summary = summarize(open_dataset(tmp_path, on_error="skip"))
    empty = tmp_path / "empty"
    assert summary["skipped"] == [{
        "path": str(empty),
        "reason": f"class folder {empty} holds no image file; expected *.tif, *.tiff, *.png or *.jpg",
    }]
    assert summary["n_images"] == 5  # the other classes are kept


def test_image_table(tmp_path):
    table = image_table(make_folders(tmp_path))
    row = table.set_index("sample_id").loc["c_b2_1"]
    assert (row["height"], row["width"], row["channels"], row["dtype"]) == (20, 16, 1, "uint16")


def test_write_summary_files(tmp_path):
    ds = make_folders(tmp_path / "data")
    path = write_summary(ds, tmp_path / "out")
    assert json.loads(path.read_text())["n_images"] == 5
    counts = pd.read_csv(tmp_path / "out" / "counts.csv")
    assert counts.query("kind == 'class_counts' and key == 'a'")["count"].item() == 3
    assert len(pd.read_csv(tmp_path / "out" / "images.csv")) == 5
    for name in ("class_counts.png", "montage.png"):
        assert (tmp_path / "out" / name).read_bytes()[:4] == b"\x89PNG"


def test_cli_synth_and_summary(tmp_path, capsys):
    assert main(["synth", "--kind", "cellpainting", "--out", str(tmp_path / "cp"), "--classes", "2",
                 "--per-class", "2", "--plates", "2", "--size", "64", "--seed", "1"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "cp")
    assert main(["summary", str(tmp_path / "cp"), "--out", str(tmp_path / "sum"), "--no-plots"]) == 0
    summary = json.loads((tmp_path / "sum" / "summary.json").read_text())
    assert summary["layout"] == "rxrx1" and summary["n_images"] == 4
    assert summary["group_counts"] == {"HEPG2-01_P1": 2, "HEPG2-01_P2": 2}
    assert summary["image_sizes"] == {"64x64": 4} and summary["channel_counts"] == {"6": 4}


def test_cli_synth_stages(tmp_path):
    assert main(["synth", "--kind", "stages", "--out", str(tmp_path / "st"), "--classes", "2",
                 "--per-class", "2", "--size", "40x100"]) == 0
    ds = open_dataset(tmp_path / "st")
    assert ds.classes == ("stage1", "stage2") and ds[0].image.shape == (1, 40, 100)
