"""The batch job: parts, manifest, errors, resume after a kill, joblib and Dask."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cellcompare.datasets import synth
from cellcompare.features import FeatureConfig, load_table, run_extraction

MINIMAL = FeatureConfig(preset="minimal", objects=("Nuclei", "Cells"), qc_samples=2)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cp") / "data"
    synth.make_cellpainting(root, classes=2, per_class=2, size=96, plates=1)
    return root


def _corrupt_copy(dataset: Path, dest: Path) -> tuple[Path, str]:
    import shutil

    shutil.copytree(dataset, dest)
    victim = sorted((dest / "images").rglob("*_w3.png"))[1]
    victim.write_bytes(b"not a png")
    return dest, victim.name


def test_run_writes_parts_manifest_qc_and_tables(dataset, tmp_path):
    out = run_extraction(dataset, tmp_path / "out", MINIMAL, jobs=1)
    cells, images = load_table(out, level="cell"), load_table(out, level="image")
    assert list(images["Metadata_ImageNumber"]) == [1, 2, 3, 4]
    counts = cells.groupby("Metadata_ImageNumber").size()
    assert (images.set_index("Metadata_ImageNumber")["Metadata_Object_Count"] == counts).all()
    assert {"Nuclei_AreaShape_Area", "Cells_Intensity_MeanIntensity_Golgi"} <= set(cells.columns)
    assert "Nuclei_AreaShape_Area__mean" in images.columns
    assert not any(c.startswith("Cytoplasm_") for c in cells.columns)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["preset"] == "minimal" and manifest["n_images"] == 4
    files = [f for image in manifest["images"] for f in image["files"]]
    assert len(files) == 24 and all(size > 0 and mtime > 0 for _, size, mtime in files)
    assert [image["sample_id"] for image in manifest["images"]] == list(images["Metadata_sample_id"])
    assert "cp-measure" in manifest["packages"]
    qc = sorted((out / "qc").glob("*.npz"))
    assert len(qc) == 2
    with np.load(qc[0]) as arrays:
        assert arrays["nuclei"].shape == (96, 96) and arrays["cells"].max() == arrays["nuclei"].max()
    assert pd.read_csv(out / "errors.csv").empty


def test_bad_and_empty_images_are_listed_and_job_continues(dataset, tmp_path):
    from PIL import Image

    root, name = _corrupt_copy(dataset, tmp_path / "bad")
    blank = sorted((root / "images").rglob("*_w1.png"))[2]
    Image.fromarray(np.zeros((96, 96), np.uint8)).save(blank)
    out = run_extraction(root, tmp_path / "out", MINIMAL, jobs=2)
    errors = pd.read_csv(out / "errors.csv")
    assert len(errors) == 2
    unreadable = errors[errors["reason"].str.contains("cannot read")]
    assert len(unreadable) == 1 and name in unreadable["reason"].iloc[0]
    assert "B03_s1" in unreadable["path"].iloc[0]
    empty = errors[errors["reason"].str.contains("zero objects")]
    assert len(empty) == 1 and empty["path"].iloc[0] == str(blank)
    images = load_table(out, level="image")
    assert len(images) == 3
    zero = images[images["Metadata_Object_Count"] == 0]
    assert len(zero) == 1 and zero["Nuclei_AreaShape_Area"].isna().all()


# Run in a child process: the CLI, with the staging of image STAGE_AT or the SHARD_AT-th shard
# write patched to SIGKILL the process half-way through the file (a deterministic "kill mid-write").
_KILLING_RUN = """
import os, signal, sys
from cellcompare.atomic import atomic_path
from cellcompare.features import shards
from cellcompare.cli import main

STAGE_AT, SHARD_AT = int(os.environ["STAGE_AT"]), int(os.environ["SHARD_AT"])
calls = {"image": 0, "shard": 0}
stage, write_shard = shards.stage, shards.write_shard

def half_then_die(path):
    with atomic_path(path) as tmp:
        tmp.write_bytes(b"half a file")
        os.kill(os.getpid(), signal.SIGKILL)

def killing_stage(table, out, level, key):
    calls["image"] += level == "image"
    if level == "image" and calls["image"] == STAGE_AT:
        half_then_die(shards.stage_path(out, key, level))
    return stage(table, out, level, key)

def killing_write_shard(path, tables, schema):
    calls["shard"] += 1
    if calls["shard"] == SHARD_AT:
        half_then_die(path)
    return write_shard(path, tables, schema)

shards.stage, shards.write_shard = killing_stage, killing_write_shard
sys.exit(main(sys.argv[1:]))
"""


def _shard_bytes(out: Path) -> dict[str, bytes]:
    return {f"{p.parent.name}/{p.name}": p.read_bytes() for p in sorted(out.glob("*/shard-*.parquet"))}


@pytest.mark.parametrize(("stage_at", "shard_at", "left"), [
    (3, 0, {"image": 2, "cells": 3, "shards": []}),                      # killed staging image 3
    (0, 2, {"image": 4, "cells": 4, "shards": ["cells/shard-000001-000256.parquet"]}),  # writing a shard
])
def test_resume_after_kill_mid_write_is_byte_identical(dataset, tmp_path, stage_at, shard_at, left):
    cfg = tmp_path / "f.yaml"
    cfg.write_text("preset: minimal\nobjects: [Nuclei, Cells]\nqc_samples: 2\n")
    reference = tmp_path / "ref"
    out = tmp_path / "resumed"
    args = ["extract", str(dataset), "--config", str(cfg), "--out"]
    subprocess.run([sys.executable, "-m", "cellcompare", *args, str(reference)], check=True,
                   capture_output=True, timeout=120)
    killed = subprocess.run([sys.executable, "-c", _KILLING_RUN, *args, str(out)], capture_output=True,
                            env={**os.environ, "STAGE_AT": str(stage_at), "SHARD_AT": str(shard_at)},
                            timeout=120)
    assert killed.returncode == -signal.SIGKILL
    staged = out / "staged"
    assert len(list(staged.glob("*.image.arrow"))) == left["image"]
    assert len(list(staged.glob("*.cells.arrow"))) == left["cells"]
    assert list(_shard_bytes(out)) == left["shards"]
    assert len(list(out.rglob(".*.tmp"))) == 1  # the half-written file
    subprocess.run([sys.executable, "-m", "cellcompare", *args, str(out)], check=True,
                   capture_output=True, timeout=120)
    assert _shard_bytes(out) == _shard_bytes(reference)
    assert list(_shard_bytes(out)) == ["cells/shard-000001-000256.parquet",
                                       "image/shard-000001-000256.parquet"]
    assert not list(out.rglob("*.tmp")) and not list(staged.iterdir())


def test_dask_local_cluster_gives_same_table(dataset, tmp_path):
    distributed = pytest.importorskip("distributed")
    reference = run_extraction(dataset, tmp_path / "ref", MINIMAL, jobs=1)
    with distributed.LocalCluster(n_workers=1, processes=False, host="127.0.0.1",
                                  protocol="tcp://",
                                  dashboard_address=None) as cluster:
        out = run_extraction(dataset, tmp_path / "dask", MINIMAL, scheduler=cluster.scheduler_address)
    pd.testing.assert_frame_equal(load_table(out, level="cell"), load_table(reference, level="cell"))


def test_scheduler_is_not_contacted_when_every_image_is_extracted(dataset, tmp_path, monkeypatch):
    distributed = pytest.importorskip("distributed")
    out = run_extraction(dataset, tmp_path / "out", MINIMAL, jobs=1)
    before = sorted(p.stat().st_mtime_ns for p in (out / "image").glob("*.parquet"))
    contacted = []

    def client(address, *args, **kwargs):  # a real Client would wait 30 s for a dead address
        contacted.append(address)
        raise OSError(f"timed out connecting to {address}")

    monkeypatch.setattr(distributed, "Client", client)
    assert run_extraction(dataset, out, MINIMAL, scheduler="tcp://127.0.0.1:9") == out
    assert contacted == []
    assert sorted(p.stat().st_mtime_ns for p in (out / "image").glob("*.parquet")) == before
    (out / "image" / "shard-000001-000256.parquet").unlink()  # images to do: the scheduler is asked
    with pytest.raises(OSError, match="timed out connecting"):
        run_extraction(dataset, out, MINIMAL, scheduler="tcp://127.0.0.1:9")
    assert contacted == ["tcp://127.0.0.1:9"]


def test_reused_workers_read_relative_paths_from_the_callers_folder(dataset, tmp_path, monkeypatch):
    """loky keeps its workers between runs, each in the folder it started in."""
    run_extraction(dataset, tmp_path / "warm", MINIMAL, jobs=2)  # workers start here
    monkeypatch.chdir(dataset.parent)
    out = run_extraction(dataset.name, "relative", MINIMAL, jobs=2)
    assert len(load_table(dataset.parent / "relative", level="image")) == 4
    assert pd.read_csv(dataset.parent / "relative" / "errors.csv").empty
    assert json.loads((out / "manifest.json").read_text())["dataset_dir"] == dataset.name


def test_unreadable_dataset_leaves_no_output_folder(tmp_path, caplog):
    from cellcompare import cli

    out = tmp_path / "feats" / "cp"
    assert cli.main(["extract", str(tmp_path / "no_such_data"), "--out", str(out)]) == 2
    assert "no_such_data does not exist" in caplog.text
    assert not (tmp_path / "feats").exists()


def test_excluded_class_is_not_extracted_and_resume_with_other_options_refused(dataset, tmp_path):
    from cellcompare.features.batch import DatasetOptionsMismatchError

    options = {"layout": "rxrx1", "exclude_classes": ["siRNA_0002"], "on_error": "raise"}
    out = run_extraction(dataset, tmp_path / "out", MINIMAL, dataset_options=options)
    images = load_table(out, level="image")
    assert list(images["Metadata_sample_id"]) == ["HEPG2-01_1_B02_1", "HEPG2-01_1_B03_1"]
    assert set(load_table(out, level="cell")["Metadata_sample_id"]) == set(images["Metadata_sample_id"])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["n_images"] == 2
    assert manifest["dataset_options"] == {"exclude_classes": ["siRNA_0002"], "layout": "rxrx1",
                                           "on_error": "raise"}
    files = [f for image in manifest["images"] for f in image["files"]]
    wells = {Path(path).name.split("_")[0] for path, _, _ in files}
    assert wells == {"B02", "B03"} and len(files) == 12
    with pytest.raises(DatasetOptionsMismatchError, match=r"\['exclude_classes'\] differ"):
        run_extraction(dataset, out, MINIMAL, dataset_options={"layout": "rxrx1"})
    # on_error alone selects the same images: resuming is allowed and nothing is redone
    before = sorted(p.stat().st_mtime_ns for p in (out / "image").glob("*.parquet"))
    run_extraction(dataset, out, MINIMAL, dataset_options={**options, "on_error": "skip"})
    assert sorted(p.stat().st_mtime_ns for p in (out / "image").glob("*.parquet")) == before


def test_resume_with_other_feature_settings_is_refused(dataset, tmp_path):
    from cellcompare.features.batch import FeatureConfigMismatchError

    out = run_extraction(dataset, tmp_path / "out", MINIMAL)
    before = sorted(p.stat().st_mtime_ns for p in (out / "image").glob("*.parquet"))
    other = FeatureConfig.from_dict({**MINIMAL.to_dict(), "min_area": 35})
    with pytest.raises(FeatureConfigMismatchError, match=r"'min_area'\] differ"):
        run_extraction(dataset, out, other)
    # nothing already computed is touched, and the same settings still resume
    assert sorted(p.stat().st_mtime_ns for p in (out / "image").glob("*.parquet")) == before
    run_extraction(dataset, out, MINIMAL)
    assert sorted(p.stat().st_mtime_ns for p in (out / "image").glob("*.parquet")) == before


def test_manifest_records_the_convention_and_resume_refuses_a_change(dataset, tmp_path):
    from cellcompare.features.batch import FeatureConfigMismatchError

    out = run_extraction(dataset, tmp_path / "out", MINIMAL)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["conventions"] == manifest["config"]["conventions"] == "cellprofiler4"
    other = FeatureConfig.from_dict({**MINIMAL.to_dict(), "conventions": "cp_measure"})
    with pytest.raises(FeatureConfigMismatchError,
                       match=r"follow the 'cellprofiler4' convention, asked for 'cp_measure'"):
        run_extraction(dataset, out, other)
    # a manifest written before the key existed holds cp_measure's numbers
    for key in ("config", "user_config"):
        del manifest[key]["conventions"]
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(FeatureConfigMismatchError, match=r"follow the 'cp_measure' convention"):
        run_extraction(dataset, out, MINIMAL)
    run_extraction(dataset, out, other)


def test_cli_passes_dataset_options(monkeypatch, tmp_path):
    from cellcompare import cli
    from cellcompare.features import cli as features_cli
    seen = {}
    monkeypatch.setattr(features_cli, "run_extraction", lambda *a, **k: seen.update(k) or Path(a[1]))
    cli.main(["extract", "data", "--out", str(tmp_path), "--layout", "folders", "--include-class",
              "a", "--include-class", "b", "--exclude-class", "c", "--on-error", "raise"])
    assert seen["dataset_options"] == {"layout": "folders", "include_classes": ["a", "b"],
                                       "exclude_classes": ["c"], "on_error": "raise"}
    cli.main(["extract", "data", "--out", str(tmp_path)])
    assert seen["dataset_options"] == {"layout": "auto", "include_classes": None,
                                       "exclude_classes": [], "on_error": "skip"}


def test_load_table_errors(tmp_path):
    with pytest.raises(ValueError, match="level"):
        load_table(tmp_path, level="well")
    with pytest.raises(FileNotFoundError, match="no Parquet parts"):
        load_table(tmp_path, level="image")


def test_a_resumed_extraction_keeps_the_diameter_it_chose(dataset, tmp_path):
    """Images added after the start do not move the estimated diameter of the parts written."""
    import json

    config = FeatureConfig(preset="minimal", objects=("Nuclei",), qc_samples=0)
    out = run_extraction(dataset, tmp_path / "out", config)
    manifest = json.loads((out / "manifest.json").read_text())
    chosen = manifest["config"]["diameter"]
    assert manifest["segmentation"]["diameter"]["chosen_by"] == "estimated"
    assert manifest["user_config"]["diameter"] is None and len(chosen) == 2
    manifest["config"]["diameter"] = [chosen[0] + 1.0, chosen[1] + 4.0]   # as if other images
    (out / "manifest.json").write_text(json.dumps(manifest))
    run_extraction(dataset, out, config)                                   # resumed: not refused
    assert json.loads((out / "manifest.json").read_text())["config"]["diameter"] == \
        [chosen[0] + 1.0, chosen[1] + 4.0]
