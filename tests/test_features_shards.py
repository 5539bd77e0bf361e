"""Feature shards: size on disk, dtype, damaged shards, the folder lock, a full disk."""

from __future__ import annotations

import errno
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cellcompare.datasets import synth
from cellcompare.features import FeatureConfig, load_table, run_extraction, shards
from cellcompare.features.batch import FeatureConfigMismatchError
from cellcompare.features.lock import FolderLockedError, folder_lock
from cellcompare.features.tables import TableLayoutError

MINIMAL = FeatureConfig(preset="minimal", objects=("Nuclei", "Cells"), qc_samples=0)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cp") / "data"
    synth.make_cellpainting(root, classes=2, per_class=3, size=96, plates=1)  # 6 images
    return root


@pytest.fixture(scope="module")
def reference(dataset, tmp_path_factory) -> Path:
    return run_extraction(dataset, tmp_path_factory.mktemp("ref") / "out", MINIMAL,
                          shard_images=4)


def _names(out: Path, level: str) -> list[str]:
    return sorted(p.name for p in (out / level).glob("*.parquet"))


def test_shards_hold_ranges_of_images_as_float32_with_their_record(reference):
    assert _names(reference, "image") == ["shard-000001-000004.parquet", "shard-000005-000008.parquet"]
    assert _names(reference, "cells") == _names(reference, "image")
    first = reference / "cells" / "shard-000001-000004.parquet"
    recorded = shards.entries(first)
    assert [e.number for e in recorded] == [1, 2, 3, 4]
    assert sum(e.rows for e in recorded) == pq.read_metadata(first).num_rows
    manifest = json.loads((reference / "manifest.json").read_text())
    assert [image["sample_id"] for image in manifest["images"][:4]] == \
        [json.loads(e.key)["sample_id"] for e in recorded]
    assert manifest["storage"] == {"layout": "shards", "shard_images": 4, "dtype": "float32"}
    cells = load_table(reference, level="cell")
    assert cells["Nuclei_AreaShape_Area"].dtype == np.float32
    assert cells["Metadata_ImageNumber"].tolist() == sorted(cells["Metadata_ImageNumber"])
    assert set(cells["Metadata_ImageNumber"]) == set(range(1, 7))
    assert not list((reference / "staged").iterdir())


def test_float64_is_a_setting_and_a_resume_with_another_dtype_is_refused(dataset, reference, tmp_path):
    wide = run_extraction(dataset, tmp_path / "f64", FeatureConfig(**{**MINIMAL.to_dict(), "dtype": "float64"}))
    cells64, cells32 = load_table(wide, level="cell"), load_table(reference, level="cell")
    assert cells64["Nuclei_AreaShape_Area"].dtype == np.float64
    np.testing.assert_allclose(cells32["Cells_Intensity_MeanIntensity_DNA"],
                               cells64["Cells_Intensity_MeanIntensity_DNA"], rtol=1e-6)
    with pytest.raises(FeatureConfigMismatchError, match="dtype"):
        run_extraction(dataset, wide, MINIMAL)


def test_a_truncated_shard_is_named_by_readers_and_redone_on_resume(dataset, reference, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    victim = out / "cells" / "shard-000005-000008.parquet"
    victim.write_bytes(victim.read_bytes()[:1000])
    with pytest.raises(TableLayoutError, match=r"shard-000005-000008.parquet is damaged.*extract"):
        load_table(out, level="cell")
    kept = (out / "image" / "shard-000001-000004.parquet").stat().st_mtime_ns
    run_extraction(dataset, out, MINIMAL, shard_images=4)
    assert (out / "image" / "shard-000001-000004.parquet").stat().st_mtime_ns == kept
    for level in ("cells", "image"):
        for name in _names(reference, level):
            assert (out / level / name).read_bytes() == (reference / level / name).read_bytes()


def test_a_shard_with_fewer_rows_than_recorded_is_redone(dataset, reference, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    path = out / "image" / "shard-000001-000004.parquet"
    table, meta = pq.read_table(path), pq.read_metadata(path).metadata
    with pq.ParquetWriter(path, table.schema) as writer:     # a readable file missing a row
        writer.write_table(table.slice(1))
        writer.add_key_value_metadata({k.decode(): v.decode() for k, v in meta.items()
                                       if k == shards.ENTRIES_KEY.encode()})
    run_extraction(dataset, out, MINIMAL, shard_images=4)
    assert path.read_bytes() == (reference / "image" / path.name).read_bytes()


def test_another_shard_size_rewrites_the_shards_without_extracting(dataset, reference, tmp_path, caplog):
    out = tmp_path / "out"
    shutil.copytree(reference, out)
    with caplog.at_level("INFO", logger="cellcompare.features.batch"):
        run_extraction(dataset, out, MINIMAL, shard_images=3)
    assert "0 of 6 images to extract" in caplog.text
    assert _names(out, "image") == ["shard-000001-000003.parquet", "shard-000004-000006.parquet"]
    pd.testing.assert_frame_equal(load_table(out, level="cell"), load_table(reference, level="cell"))


def test_a_failed_image_is_retried_and_joins_its_shard(dataset, reference, tmp_path, monkeypatch):
    from cellcompare.features import batch

    real = batch.extract_sample

    def failing(sample, config, *, image_number, **kwargs):
        if image_number == 2:
            raise MemoryError("image 2 did not fit")
        return real(sample, config, image_number=image_number, **kwargs)

    monkeypatch.setattr(batch, "extract_sample", failing)     # jobs=1 runs in this process
    out = run_extraction(dataset, tmp_path / "out", MINIMAL, shard_images=4)
    assert [e.number for e in shards.entries(out / "image" / "shard-000001-000004.parquet")] == [1, 3, 4]
    assert "image 2 did not fit" in pd.read_csv(out / "errors.csv")["reason"].iloc[0]
    monkeypatch.undo()
    run_extraction(dataset, out, MINIMAL, shard_images=4)
    for level in ("cells", "image"):
        for name in _names(reference, level):
            assert (out / level / name).read_bytes() == (reference / level / name).read_bytes()


def test_size_on_disk_is_close_to_the_float32_payload(reference):
    cells, images = load_table(reference, level="cell"), load_table(reference, level="image")
    features = [c for c in cells.columns if not c.startswith("Metadata_")]
    payload = len(cells) * len(features) * 4 + len(images) * images.shape[1] * 4
    on_disk = sum(p.stat().st_size for p in reference.glob("*/shard-*.parquet"))
    # 6 tiny images: the two footers per shard dominate (measured 4-5x; one-image parts were ~40x)
    assert on_disk < 8 * payload


def test_a_second_extraction_is_refused_naming_the_holder(dataset, tmp_path):
    out = tmp_path / "out"
    with folder_lock(out):
        with pytest.raises(FolderLockedError, match=rf"process {os.getpid()} on host {socket.gethostname()}"):
            run_extraction(dataset, out, MINIMAL)
    assert not (out / ".lock").exists()


def test_a_lock_left_by_a_dead_process_is_taken_over(dataset, tmp_path, caplog):
    out = tmp_path / "out"
    out.mkdir()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    (out / ".lock").write_text(json.dumps({"host": socket.gethostname(), "pid": int(gone.stdout)}))
    with caplog.at_level("WARNING", logger="cellcompare.features.lock"):
        run_extraction(dataset, out, MINIMAL)
    assert "which is gone" in caplog.text
    assert len(load_table(out)) == 6 and not (out / ".lock").exists()


def test_a_full_disk_names_the_folder_and_leaves_no_partial_shard(dataset, tmp_path, monkeypatch):
    out = tmp_path / "out"

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(pa.parquet.ParquetWriter, "write_table", full)
    with pytest.raises(shards.DiskFullError, match=rf"no space left in {out / 'cells'}: about [\d,]+ bytes needed"):
        run_extraction(dataset, out, MINIMAL)
    assert not list(out.glob("*/shard-*")) and not list(out.rglob("*.tmp"))
    assert len(list((out / "staged").glob("*.image.arrow"))) == 6    # finished images are kept
    monkeypatch.undo()
    run_extraction(dataset, out, MINIMAL)
    assert len(load_table(out)) == 6


def test_shards_of_many_row_groups_are_unpacked_image_by_image(dataset, reference, tmp_path, monkeypatch):
    monkeypatch.setattr(shards, "ROW_GROUP_BYTES", 1)       # one row group per image
    out = run_extraction(dataset, tmp_path / "out", MINIMAL, shard_images=4)
    assert pq.ParquetFile(out / "cells" / "shard-000001-000004.parquet").num_row_groups == 4
    pd.testing.assert_frame_equal(load_table(out, level="cell"), load_table(reference, level="cell"))
    run_extraction(dataset, out, MINIMAL, shard_images=5)   # every shard unpacked and rewritten
    assert _names(out, "cells") == ["shard-000001-000005.parquet", "shard-000006-000010.parquet"]
    assert pq.ParquetFile(out / "cells" / "shard-000001-000005.parquet").num_row_groups == 5
    pd.testing.assert_frame_equal(load_table(out, level="cell"), load_table(reference, level="cell"))
