"""Readers: pixel round trips on every layout and dtype, layout detection, class filters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from PIL import Image

from cellcompare.datasets import (
    ChannelSetDataset,
    ClassFolderDataset,
    DatasetError,
    RxRx1Dataset,
    Sample,
    detect_layout,
    open_dataset,
)


def ramp(shape, dtype, offset=0):
    """Distinct known values per pixel, spanning the dtype."""
    top = np.iinfo(dtype).max
    values = (np.arange(np.prod(shape)) * 7919 + offset) % (top + 1)
    return values.reshape(shape).astype(dtype)


def write_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def write_rxrx1(root: Path, rows: list[tuple[str, int, str, int, str]], size=(12, 10)) -> dict:
    """RxRx1 folder: rows of (experiment, plate, well, site, sirna); returns {site_id: image}."""
    images, records = {}, []
    for n, (exp, plate, well, site, sirna) in enumerate(rows):
        site_id = f"{exp}_{plate}_{well}_{site}"
        image = np.stack([ramp(size, np.uint8, offset=31 * n + c) for c in range(6)])
        for c in range(6):
            write_png(root / "images" / exp / f"Plate{plate}" / f"{well}_s{site}_w{c + 1}.png", image[c])
        images[site_id] = image
        records.append({"site_id": site_id, "well_id": f"{exp}_{plate}_{well}", "cell_type": "HEPG2",
                        "dataset": "train", "experiment": exp, "plate": plate, "well": well,
                        "site": site, "well_type": "treatment", "sirna": sirna, "sirna_id": 0})
    pd.DataFrame(records).to_csv(root / "metadata.csv", index=False)
    return images


RX_ROWS = [("HEPG2-01", 1, "B02", 1, "siRNA_1"), ("HEPG2-01", 1, "B03", 1, "siRNA_2"),
           ("HEPG2-01", 2, "B02", 1, "siRNA_1"), ("HEPG2-01", 2, "C04", 2, "siRNA_2")]


def test_rxrx1_round_trip(tmp_path):
    images = write_rxrx1(tmp_path, RX_ROWS)
    ds = open_dataset(tmp_path)
    assert isinstance(ds, RxRx1Dataset) and ds.layout == "rxrx1"
    assert ds.channel_names == ("DNA", "ER", "Actin", "RNA", "Mito", "Golgi")
    assert len(ds) == 4 and ds.classes == ("siRNA_1", "siRNA_2")
    assert list(ds.groups) == ["HEPG2-01_P1", "HEPG2-01_P1", "HEPG2-01_P2", "HEPG2-01_P2"]
    for sample_id, image in images.items():
        sample = ds.get(sample_id)
        assert isinstance(sample, Sample)
        assert sample.image.dtype == np.uint8 and sample.image.shape == (6, 12, 10)
        np.testing.assert_array_equal(sample.image, image)
        np.testing.assert_allclose(sample.float_image, image / 255.0, rtol=1e-6)
    assert ds.get("HEPG2-01_2_C04_2").metadata["well"] == "C04"
    assert list(ds.index.columns[:3]) == ["sample_id", "label", "group"]


def test_rxrx1_is_lazy(tmp_path):
    write_rxrx1(tmp_path, RX_ROWS)
    ds = open_dataset(tmp_path)
    # corrupting a file after construction only fails when that sample is read
    Path(ds.paths_of(0)[0]).write_bytes(b"not a png")
    assert ds[1].image.shape == (6, 12, 10)
    with pytest.raises(DatasetError, match="B02_s1_w1.png"):
        ds[0]


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("ext", ["png", "tif"])
def test_folders_grayscale_round_trip(tmp_path, dtype, ext):
    arrays = {}
    for cls in ("alpha", "beta"):
        for i in range(2):
            array = ramp((9, 11), dtype, offset=100 * i + len(cls))
            path = tmp_path / cls / f"img{i}.{ext}"
            if ext == "png":
                write_png(path, array)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                tifffile.imwrite(path, array)
            arrays[f"{cls}_img{i}"] = array
    ds = open_dataset(tmp_path)
    assert isinstance(ds, ClassFolderDataset) and ds.channel_names == ("Gray",)
    assert ds.classes == ("alpha", "beta") and len(ds) == 4
    for sample in ds:
        assert sample.image.dtype == dtype and sample.image.shape == (1, 9, 11)
        np.testing.assert_array_equal(sample.image[0], arrays[sample.id])
        assert sample.float_image.max() == pytest.approx(arrays[sample.id].max() / np.iinfo(dtype).max)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("photometric", ["minisblack", "rgb"])
def test_folders_multipage_tiff(tmp_path, dtype, photometric):
    stack = np.stack([ramp((8, 6), dtype, offset=k) for k in range(3)])
    (tmp_path / "a").mkdir()
    # minisblack: 3 pages; rgb: one page with 3 separate sample planes
    tifffile.imwrite(tmp_path / "a" / "stack.tif", stack, photometric=photometric,
                     planarconfig="separate" if photometric == "rgb" else None)
    ds = open_dataset(tmp_path)
    assert ds.channel_names == ("C1", "C2", "C3")
    np.testing.assert_array_equal(ds[0].image, stack)


def test_folders_multichannel_tiff_samples(tmp_path):
    rgb = np.stack([ramp((8, 6), np.uint16, offset=k) for k in range(3)], axis=-1)  # (H, W, S)
    (tmp_path / "a").mkdir()
    tifffile.imwrite(tmp_path / "a" / "rgb.tif", rgb, photometric="rgb")
    sample = open_dataset(tmp_path)[0]
    assert sample.image.shape == (3, 8, 6)
    np.testing.assert_array_equal(sample.image, np.moveaxis(rgb, -1, 0))


def test_folders_group_pattern(tmp_path):
    for name in ("b1_000.png", "b2_001.png"):
        write_png(tmp_path / "c" / name, ramp((4, 4), np.uint8))
    ds = open_dataset(tmp_path, group_pattern=r"^(b\d+)_")
    assert list(ds.groups) == ["b1", "b2"]


def write_channel_set(folder: Path, stem: str, suffixes=("D", "F", "R"), shape=(7, 5), dtype=np.uint16):
    folder.mkdir(parents=True, exist_ok=True)
    arrays = [ramp(shape, dtype, offset=13 * k + len(stem)) for k in range(len(suffixes))]
    for suffix, array in zip(suffixes, arrays):
        tifffile.imwrite(folder / f"{stem}_{suffix}.tif", array)
    return np.stack(arrays)


def test_channelsets_round_trip(tmp_path):
    a = write_channel_set(tmp_path, "01_POS002")
    b = write_channel_set(tmp_path, "01_POS076")
    ds = open_dataset(tmp_path)
    assert isinstance(ds, ChannelSetDataset) and ds.layout == "channelsets"
    assert ds.channel_names == ("D", "F", "R") and list(ds.ids) == ["01_POS002", "01_POS076"]
    np.testing.assert_array_equal(ds[0].image, a)
    np.testing.assert_array_equal(ds.get("01_POS076").image, b)
    assert ds[0].label is None


def test_channelsets_in_class_folders_with_names(tmp_path):
    expected = write_channel_set(tmp_path / "wt", "s1", suffixes=("w1", "w2"))
    write_channel_set(tmp_path / "mut", "s1", suffixes=("w1", "w2"))
    ds = open_dataset(tmp_path, channel_names=("DNA", "Actin"))
    assert ds.layout == "channelsets" and ds.classes == ("mut", "wt")
    assert ds.channel_names == ("DNA", "Actin")
    np.testing.assert_array_equal(ds.get("wt_s1").image, expected)


def test_example_fly(example_fly):
    ds = open_dataset(example_fly)
    assert ds.layout == "channelsets" and len(ds) == 3
    assert ds.channel_names == ("D", "F", "R")
    sample = ds[0]
    assert sample.image.shape == (3, 1006, 1000) and sample.image.dtype == np.uint16
    assert 0 < sample.float_image.mean() < 1


def test_include_and_exclude_classes(tmp_path):
    for cls in ("a", "b", "c"):
        write_png(tmp_path / cls / "x.png", ramp((4, 4), np.uint8))
    assert open_dataset(tmp_path, include_classes=["a", "c"]).classes == ("a", "c")
    assert open_dataset(tmp_path, exclude_classes=["b"]).classes == ("a", "c")
    with pytest.raises(DatasetError, match="'zzz'"):
        open_dataset(tmp_path, include_classes=["zzz"])


def test_rxrx1_include_classes(tmp_path):
    write_rxrx1(tmp_path, RX_ROWS)
    ds = open_dataset(tmp_path, include_classes=["siRNA_2"])
    assert list(ds.labels) == ["siRNA_2", "siRNA_2"]
    ds = open_dataset(tmp_path, exclude_classes=["siRNA_2"])
    assert list(ds.ids) == ["HEPG2-01_1_B02_1", "HEPG2-01_2_B02_1"]


def test_detect_layout(tmp_path):
    write_rxrx1(tmp_path / "rx", RX_ROWS[:1])
    write_png(tmp_path / "fo" / "a" / "img_001.png", ramp((4, 4), np.uint8))
    write_png(tmp_path / "fo" / "a" / "img_002.png", ramp((4, 4), np.uint8))
    write_channel_set(tmp_path / "cs", "p1")
    write_channel_set(tmp_path / "cs", "p2")
    assert [detect_layout(tmp_path / k) for k in ("rx", "fo", "cs")] == ["rxrx1", "folders", "channelsets"]
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match="cannot tell the layout"):
        detect_layout(tmp_path / "empty")


def test_float_image_of_float_and_bool():
    sample = Sample(id="x", image=np.array([[[-0.5, 0.25, 2.0]]], dtype=np.float64))
    np.testing.assert_array_equal(sample.float_image, np.array([[[0, 0.25, 1]]], np.float32))
    assert sample.float_image.dtype == np.float32


def test_dataset_config_from_yaml(tmp_path):
    for cls in ("a", "b"):
        write_png(tmp_path / "data" / cls / "b1_0.png", ramp((4, 4), np.uint8))
    (tmp_path / "c.yaml").write_text(
        f"dataset:\n  path: {tmp_path / 'data'}\n  exclude_classes: [b]\n"
        "  options: {group_pattern: '^(b[0-9])_'}\n")
    from cellcompare.config import UnknownKeyError
    from cellcompare.datasets import DatasetConfig

    ds = DatasetConfig.from_yaml(tmp_path / "c.yaml").open()
    assert ds.classes == ("a",) and list(ds.groups) == ["b1"]
    with pytest.raises(UnknownKeyError, match="unknown key 'dataset.rooot'"):
        DatasetConfig.from_dict({"rooot": "x"})
