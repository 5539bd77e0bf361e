"""Partitioned feature datasets, streaming per-image means and per-image cell sampling."""

from __future__ import annotations

import os
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from cellcompare.features import load_table, tables
from cellcompare.features.tables import (
    TableLayoutError,
    compact,
    open_table,
    sample_cells,
    stream_image_means,
)


def _write_parts(out: Path, n_images: int = 9, seed: int = 0) -> pd.DataFrame:
    """Per-image cell parts as the batch job writes them; image i has i + 1 cells."""
    rng = np.random.default_rng(seed)
    (out / "cells").mkdir(parents=True)
    frames = []
    for i in range(n_images):
        n = i + 1
        cells = pd.DataFrame({
            "Metadata_ImageNumber": np.full(n, i + 1), "Metadata_sample_id": f"img{i:02d}",
            "Metadata_Plate": f"P{i % 3}", "Metadata_Well": "B02",
            "Metadata_ObjectNumber": np.arange(1, n + 1),
            "Metadata_Location_Center_X": rng.uniform(0, 64, n),
            "Cells_AreaShape_Area": rng.integers(20, 200, n).astype(float),
            "Nuclei_Intensity_MeanIntensity_DNA": rng.uniform(size=n)})
        cells.to_parquet(out / "cells" / f"{i + 1:06d}.parquet", index=False)
        frames.append(cells)
    return pd.concat(frames, ignore_index=True)


@pytest.mark.parametrize("partition, key, expected", [("plate", "Metadata_Plate", ["P0", "P1", "P2"]),
                                                      ("chunk", "Metadata_Chunk", ["0", "1", "2"])])
def test_compact_writes_a_partitioned_dataset(tmp_path, partition, key, expected):
    cells = _write_parts(tmp_path)
    target = compact(tmp_path, "cell", partition=partition, chunk_images=4, batch_rows=7)
    assert sorted(p.name for p in target.iterdir()) == [f"{key}={v}" for v in expected]
    back = open_table(tmp_path, "cell").to_table().to_pandas()
    back = back.sort_values(["Metadata_ImageNumber", "Metadata_ObjectNumber"]).reset_index(drop=True)
    assert len(back) == len(cells) == 45
    np.testing.assert_array_equal(back["Cells_AreaShape_Area"], cells["Cells_AreaShape_Area"])
    if partition == "chunk":  # ImageNumbers 1-3 -> chunk 0, 4-7 -> 1, 8-9 -> 2
        chunks = back.groupby("Metadata_Chunk", observed=True)["Metadata_ImageNumber"].agg(["min", "max"])
        assert chunks.to_numpy().tolist() == [[1, 3], [4, 7], [8, 9]]


def test_compact_by_plate_needs_the_plate_column(tmp_path):
    _write_parts(tmp_path)
    for path in (tmp_path / "cells").glob("*.parquet"):
        pd.read_parquet(path).drop(columns="Metadata_Plate").to_parquet(path, index=False)
    with pytest.raises(TableLayoutError, match="no Metadata_Plate column; use partition='chunk'"):
        compact(tmp_path, "cell")


def test_open_table_without_parts_names_the_folder(tmp_path):
    with pytest.raises(TableLayoutError, match=r"no Parquet parts under .*cells"):
        open_table(tmp_path, "cell")


@pytest.mark.parametrize("compacted", [False, True])
def test_stream_image_means_equal_the_in_memory_means(tmp_path, compacted):
    cells = _write_parts(tmp_path)
    cells.loc[3, "Cells_AreaShape_Area"] = np.nan  # image 3's first cell: NaN ignored
    for path in sorted((tmp_path / "cells").glob("*.parquet"))[2:]:
        path.unlink()  # keep parts 1, 2; part 3 holds images 3-9 (a part may hold several images)
    cells[cells.Metadata_ImageNumber >= 3].to_parquet(tmp_path / "cells" / "000003.parquet", index=False)
    if compacted:
        compact(tmp_path, "cell", partition="chunk", chunk_images=2)
    means = stream_image_means(open_table(tmp_path, "cell"), batch_rows=5)
    expected = cells.groupby("Metadata_ImageNumber")[["Cells_AreaShape_Area",
                                                      "Nuclei_Intensity_MeanIntensity_DNA"]].mean()
    assert np.isclose(expected.loc[3, "Cells_AreaShape_Area"], cells.loc[4:5, "Cells_AreaShape_Area"].mean())
    assert means["Metadata_ImageNumber"].tolist() == list(range(1, 10))
    np.testing.assert_allclose(means["Cells_AreaShape_Area__mean"], expected["Cells_AreaShape_Area"])
    np.testing.assert_allclose(means["Nuclei_Intensity_MeanIntensity_DNA__mean"],
                               expected["Nuclei_Intensity_MeanIntensity_DNA"])
    assert "Metadata_Location_Center_X" not in means and means["Metadata_sample_id"].iloc[4] == "img04"


def test_sample_cells_keeps_n_per_image_whatever_the_batches(tmp_path):
    cells = _write_parts(tmp_path)
    small = sample_cells(open_table(tmp_path, "cell"), 3, seed=1, batch_rows=2)
    counts = small.groupby("Metadata_ImageNumber").size()
    assert counts.tolist() == [1, 2, 3, 3, 3, 3, 3, 3, 3]
    compact(tmp_path, "cell", partition="plate")
    large = sample_cells(open_table(tmp_path, "cell"), 3, seed=1, batch_rows=1000,
                         columns=["Cells_AreaShape_Area"])
    pd.testing.assert_series_equal(small["Metadata_ObjectNumber"], large["Metadata_ObjectNumber"])
    assert list(large.columns[:3]) == ["Metadata_ImageNumber", "Metadata_ObjectNumber", "Metadata_sample_id"]
    other = sample_cells(open_table(tmp_path, "cell"), 3, seed=2)
    assert not other["Metadata_ObjectNumber"].equals(small["Metadata_ObjectNumber"])
    kept = small.merge(cells, on=["Metadata_ImageNumber", "Metadata_ObjectNumber"], suffixes=("", "_all"))
    np.testing.assert_array_equal(kept["Cells_AreaShape_Area"], kept["Cells_AreaShape_Area_all"])


def _write_wide_parts(out: Path, n_images: int = 30, n_cells: int = 100, n_features: int = 300) -> int:
    """``n_images`` parts of ``n_cells`` cells x ``n_features`` float64 columns; returns their bytes."""
    rng = np.random.default_rng(0)
    (out / "cells").mkdir(parents=True)
    names = [f"Cells_F{j:03d}" for j in range(n_features)]
    for i in range(n_images):
        keys = pd.DataFrame({"Metadata_ImageNumber": np.full(n_cells, i + 1),
                             "Metadata_ObjectNumber": np.arange(1, n_cells + 1)})
        values = pd.DataFrame(rng.normal(size=(n_cells, n_features)), columns=names)
        pd.concat([keys, values], axis=1).to_parquet(out / "cells" / f"{i + 1:06d}.parquet", index=False)
    return n_images * n_cells * n_features * 8


def _peak(fn) -> int:
    """Peak bytes of Python and numpy allocations (pandas frames) while ``fn`` runs."""
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_sample_cells_holds_the_kept_rows_not_the_table(tmp_path):
    whole_bytes = _write_wide_parts(tmp_path)  # 3,000 cells x 300 features = 7.2 MB
    whole = _peak(lambda: load_table(tmp_path, level="cell"))
    sampled = _peak(lambda: sample_cells(open_table(tmp_path, "cell"), 2, batch_rows=64))
    assert whole > whole_bytes  # the measurement sees a whole read
    assert sampled < whole_bytes / 8, (sampled, whole)  # 60 kept rows, one batch, 24 B keys per cell


def test_a_cap_above_every_count_is_the_whole_table(tmp_path):
    _write_parts(tmp_path)
    pd.testing.assert_frame_equal(load_table(tmp_path, level="cell", cells_per_image=9, seed=4),
                                  load_table(tmp_path, level="cell"))


@pytest.mark.parametrize("n", [1, 4, 20])
def test_the_cap_keeps_min_n_cells_of_every_image_and_the_seed_fixes_them(tmp_path, n):
    cells = _write_parts(tmp_path, n_images=12)  # image i has i + 1 cells
    first = load_table(tmp_path, level="cell", cells_per_image=n, seed=7)
    counts = first.groupby("Metadata_ImageNumber").size()
    assert counts.tolist() == [min(n, i + 1) for i in range(12)]
    pd.testing.assert_frame_equal(first, load_table(tmp_path, level="cell", cells_per_image=n, seed=7))
    kept = first.merge(cells, on=["Metadata_ImageNumber", "Metadata_ObjectNumber"], suffixes=("", "_all"))
    assert len(kept) == len(first)  # real cells, with their own values
    np.testing.assert_array_equal(kept["Nuclei_Intensity_MeanIntensity_DNA"],
                                  kept["Nuclei_Intensity_MeanIntensity_DNA_all"])


def test_an_image_without_cells_does_not_hide_the_features(tmp_path):
    _write_parts(tmp_path, n_images=4)
    first = tmp_path / "cells" / "000001.parquet"
    empty = pd.read_parquet(first).iloc[:0, :6]  # what the batch job writes for zero cells
    empty.to_parquet(first, index=False)
    assert "Cells_AreaShape_Area" in open_table(tmp_path, "cell").schema.names
    sampled = load_table(tmp_path, level="cell", cells_per_image=1)
    assert sampled["Metadata_ImageNumber"].tolist() == [2, 3, 4]
    assert sampled["Cells_AreaShape_Area"].notna().all()


def test_load_table_reads_only_the_asked_columns(tmp_path):
    cells = _write_parts(tmp_path)
    pd.read_parquet(tmp_path / "cells" / "000002.parquet").drop(
        columns="Nuclei_Intensity_MeanIntensity_DNA").to_parquet(tmp_path / "cells" / "000002.parquet")
    some = load_table(tmp_path, level="cell", columns=["Nuclei_Intensity_MeanIntensity_DNA"])
    assert list(some.columns) == ["Metadata_ImageNumber", "Metadata_ObjectNumber",
                                  "Nuclei_Intensity_MeanIntensity_DNA"]
    values = some["Nuclei_Intensity_MeanIntensity_DNA"].to_numpy()
    assert np.isnan(values[1:3]).all()  # image 2 (cells 2-3) lacks the column
    expected = cells["Nuclei_Intensity_MeanIntensity_DNA"].to_numpy()
    np.testing.assert_array_equal(np.delete(values, [1, 2]), np.delete(expected, [1, 2]))


@pytest.mark.parametrize("partition", ["plate", "chunk"])
def test_a_current_compacted_table_reads_like_the_parts(tmp_path, partition):
    _write_parts(tmp_path)
    parts = load_table(tmp_path, level="cell")
    sampled = load_table(tmp_path, level="cell", cells_per_image=2, seed=3)
    compact(tmp_path, "cell", partition=partition, chunk_images=4, batch_rows=7)
    back = load_table(tmp_path, level="cell")
    assert "Metadata_Chunk" not in back and len(back) == 45
    pd.testing.assert_frame_equal(back[list(parts.columns)], parts)
    again = load_table(tmp_path, level="cell", cells_per_image=2, seed=3)
    assert "Metadata_Chunk" not in again
    pd.testing.assert_frame_equal(again[list(sampled.columns)], sampled)


def test_a_compacted_table_older_than_its_parts_is_not_read(tmp_path, caplog):
    _write_parts(tmp_path)
    target = compact(tmp_path, "cell", partition="chunk")
    assert tables.compacted_path(tmp_path, "cell") == target
    os.utime(target, (1, 1))  # as if extraction resumed after compact
    with caplog.at_level("WARNING"):
        assert tables.compacted_path(tmp_path, "cell") is None
    assert "run compact again" in caplog.text
    assert "Metadata_Chunk" not in open_table(tmp_path, "cell").schema.names


def test_load_table_samples_cells_per_image(tmp_path):
    _write_parts(tmp_path)
    table = load_table(tmp_path, level="cell", cells_per_image=2, seed=0)
    assert table.groupby("Metadata_ImageNumber").size().tolist() == [1] + [2] * 8
    assert len(load_table(tmp_path, level="cell")) == 45


def test_compact_command_line_writes_the_cell_dataset_load_table_reads(tmp_path, capsys):
    from cellcompare.cli import main

    cells = _write_parts(tmp_path)
    assert main(["compact", str(tmp_path), "--level", "cell", "--partition", "chunk",
                 "--chunk-images", "5"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "dataset" / "cell")
    assert sorted(p.name for p in (tmp_path / "dataset" / "cell").iterdir()) == \
        ["Metadata_Chunk=0", "Metadata_Chunk=1"]
    back = load_table(tmp_path, "cell")
    assert len(back) == len(cells)
    np.testing.assert_array_equal(np.sort(back["Cells_AreaShape_Area"]),
                                  np.sort(cells["Cells_AreaShape_Area"]))
