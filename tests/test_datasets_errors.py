"""Bad input: each error case raises its specific DatasetError, or is skipped and recorded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from test_datasets_readers import (
    RX_ROWS,
    ramp,
    write_channel_set,
    write_png,
    write_rxrx1,
)

from cellcompare.datasets import (
    ChannelShapeError,
    DatasetError,
    EmptyClassError,
    MetadataMismatchError,
    MissingChannelError,
    UnreadableImageError,
    open_dataset,
    read_image,
)


def truncate(path: Path, keep: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


def test_on_error_must_be_known(tmp_path):
    write_png(tmp_path / "a" / "x.png", ramp((4, 4), np.uint8))
    with pytest.raises(ValueError, match="on_error"):
        open_dataset(tmp_path, on_error="ignore")


def test_missing_channel_file_channelsets(tmp_path):
    write_channel_set(tmp_path, "p1")
    write_channel_set(tmp_path, "p2")
    write_channel_set(tmp_path, "p3", suffixes=("D", "R"))
    with pytest.raises(MissingChannelError, match=r"p3.*\['F'\]"):
        open_dataset(tmp_path)
    ds = open_dataset(tmp_path, on_error="skip")
    assert list(ds.ids) == ["p1", "p2"]
    assert [Path(s.path).name for s in ds.skipped] == ["p3_F.tif"]


def test_missing_channel_file_rxrx1(tmp_path):
    write_rxrx1(tmp_path, RX_ROWS)
    missing = tmp_path / "images" / "HEPG2-01" / "Plate1" / "B03_s1_w4.png"
    missing.unlink()
    with pytest.raises(MissingChannelError, match="B03_s1_w4.png"):
        open_dataset(tmp_path)
    ds = open_dataset(tmp_path, on_error="skip")
    assert len(ds) == 3 and "HEPG2-01_1_B03_1" not in set(ds.ids)
    assert ds.skipped[0].path == str(missing)


def test_mismatched_channel_shapes(tmp_path):
    write_channel_set(tmp_path, "p1")
    write_channel_set(tmp_path, "p2")
    tifffile.imwrite(tmp_path / "p2_F.tif", ramp((9, 5), np.uint16))
    with pytest.raises(ChannelShapeError, match=r"p2.*p2_F.tif: 9x5"):
        open_dataset(tmp_path)
    ds = open_dataset(tmp_path, on_error="skip")
    assert list(ds.ids) == ["p1"] and "differ in size" in ds.skipped[0].reason


def test_mismatched_channel_count_between_samples(tmp_path):
    for i in range(2):
        write_png(tmp_path / "a" / f"gray{i}.png", ramp((5, 5), np.uint8))
    tifffile.imwrite(tmp_path / "a" / "stack.tif", np.zeros((2, 5, 5), np.uint8), photometric="minisblack")
    with pytest.raises(ChannelShapeError, match=r"stack.tif.*2 channels; expected 1"):
        open_dataset(tmp_path)
    assert len(open_dataset(tmp_path, on_error="skip")) == 2


@pytest.mark.parametrize("ext", ["png", "tif"])
def test_truncated_header(tmp_path, ext):
    for i in range(2):
        write_png(tmp_path / "a" / f"ok{i}.png", ramp((20, 20), np.uint8))
    bad = tmp_path / "a" / f"bad.{ext}"
    if ext == "png":
        write_png(bad, ramp((20, 20), np.uint8))
    else:
        tifffile.imwrite(bad, ramp((20, 20), np.uint8))
    truncate(bad, 0.02)
    with pytest.raises(UnreadableImageError, match="bad"):
        open_dataset(tmp_path)
    ds = open_dataset(tmp_path, on_error="skip")
    assert len(ds) == 2 and ds.skipped[0].path == str(bad)


@pytest.mark.parametrize("ext", ["png", "tif"])
def test_truncated_pixel_data(tmp_path, ext):
    write_png(tmp_path / "a" / "ok.png", ramp((64, 64), np.uint8))
    bad = tmp_path / "a" / f"bad.{ext}"
    noise = np.random.default_rng(0).integers(0, 255, (64, 64), dtype=np.uint8)
    if ext == "png":
        write_png(bad, noise)
    else:
        tifffile.imwrite(bad, noise)
    truncate(bad, 0.6)
    ds = open_dataset(tmp_path)  # the header is intact: found only when pixels are decoded
    position = list(ds.ids).index("a_bad")
    with pytest.raises(UnreadableImageError, match=str(bad)):
        ds[position]
    with pytest.raises(UnreadableImageError):
        open_dataset(tmp_path).validate()
    skipping = open_dataset(tmp_path, on_error="skip").validate()
    assert list(skipping.ids) == ["a_ok"] and skipping.skipped[0].path == str(bad)


def test_not_an_image_is_wrapped(tmp_path):
    path = tmp_path / "fake.png"
    path.write_text("hello")
    with pytest.raises(UnreadableImageError, match="fake.png") as info:
        read_image(path)
    assert isinstance(info.value, DatasetError) and isinstance(info.value, ValueError)


def test_empty_class_folder(tmp_path):
    write_png(tmp_path / "full" / "x.png", ramp((4, 4), np.uint8))
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(EmptyClassError, match="empty"):
        open_dataset(tmp_path, layout="folders")
    ds = open_dataset(tmp_path, layout="folders", on_error="skip")
    assert ds.classes == ("full",) and ds.skipped[0].path == str(tmp_path / "empty")
    # an excluded empty folder is no error
    assert open_dataset(tmp_path, layout="folders", exclude_classes=["empty"]).classes == ("full",)


def test_metadata_rows_without_images(tmp_path):
    write_rxrx1(tmp_path, RX_ROWS)
    table = pd.read_csv(tmp_path / "metadata.csv")
    extra = table.iloc[[0]].assign(well="H07", site_id="HEPG2-01_1_H07_1")
    pd.concat([table, extra]).to_csv(tmp_path / "metadata.csv", index=False)
    with pytest.raises(MetadataMismatchError, match=r"HEPG2-01_1_H07_1 has no image files.*H07_s1_w1.png"):
        open_dataset(tmp_path)
    ds = open_dataset(tmp_path, on_error="skip")
    assert len(ds) == 4 and ds.skipped[0].path.endswith("Plate1/H07_s1_w1.png")


def test_images_without_rows(tmp_path):
    write_rxrx1(tmp_path, RX_ROWS)
    orphan = tmp_path / "images" / "HEPG2-01" / "Plate2" / "K11_s1_w1.png"
    write_png(orphan, ramp((12, 10), np.uint8))
    with pytest.raises(MetadataMismatchError, match=r"K11_s1_w1.png has no row.*well=K11"):
        open_dataset(tmp_path)
    ds = open_dataset(tmp_path, on_error="skip")
    assert len(ds) == 4 and ds.skipped[0].path == str(orphan)


def test_metadata_missing_columns(tmp_path):
    write_rxrx1(tmp_path, RX_ROWS)
    pd.read_csv(tmp_path / "metadata.csv").drop(columns=["well"]).to_csv(tmp_path / "metadata.csv")
    with pytest.raises(MetadataMismatchError, match=r"lacks columns \['well'\]"):
        open_dataset(tmp_path, layout="rxrx1")


def test_rxrx1_mismatched_channel_shapes(tmp_path):
    write_rxrx1(tmp_path, RX_ROWS)
    write_png(tmp_path / "images" / "HEPG2-01" / "Plate1" / "B02_s1_w6.png", ramp((3, 3), np.uint8))
    with pytest.raises(ChannelShapeError, match="HEPG2-01_1_B02_1"):
        open_dataset(tmp_path)
    assert len(open_dataset(tmp_path, on_error="skip")) == 3
