"""Partitioned feature datasets, streaming per-image means and per-image cell sampling."""

from __future__ import annotations

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


def test_sample_cells_holds_only_kept_rows_and_one_batch(tmp_path, monkeypatch):
    _write_parts(tmp_path, n_images=30)  # 465 cells
    sizes = []
    original = pd.concat

    def spy(frames, *args, **kwargs):
        out = original(frames, *args, **kwargs)
        sizes.append(len(out))
        return out

    monkeypatch.setattr(tables.pd, "concat", spy)
    sample_cells(open_table(tmp_path, "cell"), 2, batch_rows=16)
    assert sizes and max(sizes) <= 30 * 2 + 16  # kept rows + one batch, never the 465 cells


def test_load_table_samples_cells_per_image(tmp_path):
    _write_parts(tmp_path)
    table = load_table(tmp_path, level="cell", cells_per_image=2, seed=0)
    assert table.groupby("Metadata_ImageNumber").size().tolist() == [1] + [2] * 8
    assert len(load_table(tmp_path, level="cell")) == 45
