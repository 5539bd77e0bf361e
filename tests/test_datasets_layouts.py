"""The ``pattern`` (file-name regex / presets) and ``loaddata`` (CellProfiler CSV) layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from PIL import Image

from cellcompare.cli import main
from cellcompare.datasets import DatasetError, open_dataset
from cellcompare.datasets.convert import ConvertError, convert_dataset, convert_image
from cellcompare.datasets.errors import (
    LayoutError,
    MetadataMismatchError,
    MissingChannelError,
)
from cellcompare.datasets.imageio import read_image
from cellcompare.datasets.loaddata import LoadDataDataset
from cellcompare.datasets.pattern import PatternDataset, compile_pattern, parse_name
from cellcompare.features import FeatureConfig, extract_sample


def write_site(folder: Path, names: list[str], seed: int, shape=(16, 12)) -> np.ndarray:
    """One uint16 TIFF per name (distinct values per channel); returns the (C, H, W) stack."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 65535, size=(len(names), *shape), dtype=np.uint16)
    for name, plane in zip(names, image):
        tifffile.imwrite(folder / name, plane)
    return image


@pytest.mark.parametrize(("preset", "stem", "expected"), [
    ("cellprofiler", "AS_09125_050116030001_D03f00d0",
     {"plate": "AS_09125_050116030001", "well": "D03", "site": "00", "channel": "d0"}),
    ("imagexpress", "B07_s2_w3", {"well": "B07", "site": "2", "channel": "w3"}),
    ("imagexpress", "MyPlate_P24_s1_w1A1B2C3D4-0000-4000-8000-00000000ABCD",
     {"plate": "MyPlate", "well": "P24", "site": "1", "channel": "w1"}),
    ("opera", "r02c11f03p01-ch4sk1fk1fl1",
     {"well": "B11", "site": "03", "plane": "01", "channel": "ch4"}),
    ("{plate}-{well}_s{site}_w{channel}", "P1-A01_s2_w1",
     {"plate": "P1", "well": "A01", "site": "2", "channel": "1"}),
])
def test_presets_and_templates_parse_names(preset, stem, expected):
    assert parse_name(compile_pattern(preset), stem) == expected


def test_pattern_without_named_group_is_refused():
    with pytest.raises(LayoutError, match="no named group"):
        compile_pattern(r"\w+_s\d")


def test_cellprofiler_naming_is_detected_and_split_by_well_and_site(tmp_path):
    stacks = {}
    for n, (well, site) in enumerate([("D03", "00"), ("D03", "01"), ("E05", "00")]):
        names = [f"AS_09125_050116030001_{well}f{site}d{c}.tif" for c in range(3)]
        stacks[(well, site)] = write_site(tmp_path, names, seed=n)
    ds = open_dataset(tmp_path)
    assert isinstance(ds, PatternDataset) and ds.layout == "pattern"
    assert ds.channel_names == ("d0", "d1", "d2")
    assert list(ds.ids) == ["AS_09125_050116030001_D03_00", "AS_09125_050116030001_D03_01",
                            "AS_09125_050116030001_E05_00"]  # plate-map order: well, then site
    sample = ds.get("AS_09125_050116030001_D03_01")
    np.testing.assert_array_equal(sample.image, stacks[("D03", "01")])
    assert sample.group == "AS_09125_050116030001"
    assert {k: sample.metadata[k] for k in ("Metadata_Plate", "Metadata_Well", "Metadata_Site")} == \
        {"Metadata_Plate": "AS_09125_050116030001", "Metadata_Well": "D03", "Metadata_Site": "01"}


def test_channel_mapping_names_orders_and_selects_channels(tmp_path):
    image = write_site(tmp_path, [f"P_A01f00d{c}.tif" for c in range(3)], seed=1)
    ds = open_dataset(tmp_path, "pattern", pattern="cellprofiler",
                      channel_names={"d2": "Mito", "d0": "DNA"})
    assert ds.channel_names == ("Mito", "DNA")
    np.testing.assert_array_equal(ds[0].image, image[[2, 0]])


def test_channel_mapping_naming_an_absent_channel_is_refused(tmp_path):
    write_site(tmp_path, [f"P_A01f00d{c}.tif" for c in range(2)], seed=1)
    with pytest.raises(LayoutError, match=r"maps channels \['d7'\].*\['d0', 'd1'\]"):
        open_dataset(tmp_path, "pattern", channel_names={"d0": "DNA", "d7": "ER"})


def test_site_lacking_a_channel_raises_or_is_skipped(tmp_path):
    write_site(tmp_path, [f"P_A01f00d{c}.tif" for c in range(3)], seed=1)
    write_site(tmp_path, [f"P_A02f00d{c}.tif" for c in range(2)], seed=2)
    with pytest.raises(MissingChannelError, match=r"lacks channels \['d2'\].*P_A02f00d0.tif"):
        open_dataset(tmp_path, "pattern")
    ds = open_dataset(tmp_path, "pattern", on_error="skip")
    assert list(ds.ids) == ["P_A01_00"] and len(ds.skipped) == 1


def test_opera_files_in_plate_folders_take_the_folder_as_plate(tmp_path):
    for plate in ("plateA", "plateB"):
        write_site(tmp_path / plate, [f"r01c02f01p01-ch{c}sk1fk1fl1.tiff" for c in (1, 2)], seed=3)
    ds = open_dataset(tmp_path, "pattern", pattern="operetta", channel_names={"ch1": "DNA", "ch2": "RNA"})
    assert sorted(ds.ids) == ["plateA_A02_01_plane01", "plateB_A02_01_plane01"]
    assert sorted(ds.groups) == ["plateA", "plateB"]
    meta = ds[0].metadata
    assert (meta["Metadata_Well"], meta["Metadata_Site"], meta["Metadata_Plane"]) == ("A02", "01", "01")


def test_class_group_labels_samples_and_filters(tmp_path):
    for n, label in enumerate(["ctrl", "drug"]):
        write_site(tmp_path, [f"{label}_B0{n + 2}_s1_w{c}.tif" for c in (1, 2)], seed=n)
    ds = open_dataset(tmp_path, "pattern", pattern="{class}_{well}_s{site}_w{channel}",
                      group_by="well", exclude_classes=["ctrl"])
    assert list(ds.labels) == ["drug"] and list(ds.groups) == ["B03"]
    with pytest.raises(DatasetError, match="not in"):
        open_dataset(tmp_path, "pattern", pattern="{class}_{well}_s{site}_w{channel}",
                     include_classes=["absent"])


def test_group_by_unknown_field_is_refused(tmp_path):
    write_site(tmp_path, [f"P_A01f00d{c}.tif" for c in range(2)], seed=1)
    with pytest.raises(LayoutError, match="group_by='batch'"):
        open_dataset(tmp_path, "pattern", group_by="batch")


def test_no_file_matching_the_pattern_names_an_example(tmp_path):
    write_site(tmp_path, ["image_1.tif"], seed=0)
    with pytest.raises(LayoutError, match="image_1.tif"):
        open_dataset(tmp_path, "pattern", pattern="imagexpress")


def write_loaddata(root: Path) -> dict[str, np.ndarray]:
    images, rows = {}, []
    for n, (plate, well, site, compound) in enumerate([("BR1", "A01", "1", "DMSO"),
                                                       ("BR1", "A01", "2", "DMSO"),
                                                       ("BR2", "B02", "1", "taxol")]):
        folder = root / "images" / plate
        names = [f"{well}_s{site}_{ch}.tif" for ch in ("dna", "rna")]
        images[f"{plate}_{well}_{site}"] = write_site(folder, names, seed=n)
        np.save(root / "illum.npy", np.ones((16, 12)))
        rows.append({"FileName_OrigDNA": names[0], "PathName_OrigDNA": f"images/{plate}",
                     "FileName_OrigRNA": names[1], "PathName_OrigRNA": str(folder.resolve()),
                     "FileName_IllumDNA": "illum.npy", "PathName_IllumDNA": ".",
                     "Metadata_Plate": plate, "Metadata_Well": well, "Metadata_Site": site,
                     "Metadata_Compound": compound, "Metadata_Source": "source_4"})
    pd.DataFrame(rows).to_csv(root / "load_data.csv", index=False)
    return images


def test_loaddata_reads_channels_metadata_label_and_group(tmp_path):
    images = write_loaddata(tmp_path)
    ds = open_dataset(tmp_path, label_column="Metadata_Compound",
                      channel_names={"OrigDNA": "DNA", "OrigRNA": "RNA"})
    assert isinstance(ds, LoadDataDataset) and ds.channel_names == ("DNA", "RNA")
    assert list(ds.ids) == ["BR1_A01_1", "BR1_A01_2", "BR2_B02_1"]
    assert list(ds.labels) == ["DMSO", "DMSO", "taxol"] and list(ds.groups) == ["BR1", "BR1", "BR2"]
    sample = ds.get("BR2_B02_1")
    np.testing.assert_array_equal(sample.image, images["BR2_B02_1"])
    assert sample.metadata["Metadata_Source"] == "source_4"


def test_loaddata_missing_file_is_a_logged_skip_naming_the_row(tmp_path, caplog):
    write_loaddata(tmp_path)
    (tmp_path / "images" / "BR1" / "A01_s2_rna.tif").unlink()
    with caplog.at_level("WARNING"):
        ds = open_dataset(tmp_path, "loaddata")
    assert list(ds.ids) == ["BR1_A01_1", "BR2_B02_1"]
    assert [r.path for r in ds.skipped] == [f"{tmp_path / 'load_data.csv'}:3"]
    assert "'Metadata_Site': '2'" in ds.skipped[0].reason and "OrigRNA" in ds.skipped[0].reason
    assert "load_data.csv line 3" in caplog.text


def test_loaddata_with_every_row_missing_is_refused(tmp_path):
    write_loaddata(tmp_path)
    for file in (tmp_path / "images").rglob("*_rna.tif"):
        file.unlink()
    with pytest.raises(MissingChannelError, match=r"no row of .*load_data.csv.*line 2"):
        open_dataset(tmp_path, "loaddata")


@pytest.mark.parametrize("layout", ["loaddata", "auto"])
def test_loaddata_csv_path_itself_is_the_dataset(tmp_path, layout):
    images = write_loaddata(tmp_path / "plate")
    csv = tmp_path / "plate" / "load_data.csv"
    renamed = csv.with_name("batch1.csv")
    csv.rename(renamed)
    ds = open_dataset(renamed, layout)
    assert isinstance(ds, LoadDataDataset) and ds.root == tmp_path / "plate"
    np.testing.assert_array_equal(ds.get("BR1_A01_2").image, images["BR1_A01_2"])


def test_extract_command_takes_the_loaddata_csv(tmp_path):
    write_loaddata(tmp_path / "plate")
    out = tmp_path / "features"
    assert main(["extract", str(tmp_path / "plate" / "load_data.csv"), "--layout", "loaddata",
                 "--out", str(out), "--preset", "minimal"]) == 0
    table = pd.read_parquet(out / "image")
    assert sorted(table["Metadata_Well"].astype(str) + table["Metadata_Site"].astype(str)) == ["A011", "A012", "B021"]


def test_loaddata_reads_cellprofiler_image_prefixed_columns(tmp_path):
    images = write_loaddata(tmp_path)
    table = pd.read_csv(tmp_path / "load_data.csv", dtype=str)
    table.columns = [f"Image_{c}" for c in table.columns]
    table.to_csv(tmp_path / "load_data.csv", index=False)
    ds = open_dataset(tmp_path, "loaddata", label_column="Metadata_Compound")
    assert list(ds.ids) == ["BR1_A01_1", "BR1_A01_2", "BR2_B02_1"] and ds.channel_names == ("OrigDNA", "OrigRNA")
    assert list(ds.labels) == ["DMSO", "DMSO", "taxol"]
    np.testing.assert_array_equal(ds.get("BR2_B02_1").image, images["BR2_B02_1"])


def test_loaddata_reads_url_columns(tmp_path):
    images = write_loaddata(tmp_path)
    table = pd.read_csv(tmp_path / "load_data.csv", dtype=str)
    for ch in ("OrigDNA", "OrigRNA"):
        files = [(tmp_path / "images" / p).resolve() / f for p, f in
                 zip(table["Metadata_Plate"], table[f"FileName_{ch}"])]
        table[f"URL_{ch}"] = [f.as_uri() for f in files] if ch == "OrigDNA" else [
            str(f.relative_to(tmp_path)) for f in files]
        table = table.drop(columns=[f"FileName_{ch}", f"PathName_{ch}"])
    table.to_csv(tmp_path / "load_data.csv", index=False)
    ds = open_dataset(tmp_path, "loaddata")
    assert ds.channel_names == ("OrigDNA", "OrigRNA")
    np.testing.assert_array_equal(ds.get("BR1_A01_2").image, images["BR1_A01_2"])


def test_loaddata_remote_url_outside_the_root_names_the_row(tmp_path):
    write_loaddata(tmp_path)
    table = pd.read_csv(tmp_path / "load_data.csv", dtype=str).drop(columns=["FileName_OrigDNA", "PathName_OrigDNA"])
    table["URL_OrigDNA"] = "s3://bucket/elsewhere/a.tif"
    table.to_csv(tmp_path / "load_data.csv", index=False)
    with pytest.raises(LayoutError, match=r"load_data.csv line 2: URL_OrigDNA s3://bucket/elsewhere/a.tif"):
        open_dataset(tmp_path, "loaddata")


def test_loaddata_unknown_label_column_lists_the_metadata(tmp_path):
    write_loaddata(tmp_path)
    with pytest.raises(MetadataMismatchError, match="Metadata_Compound"):
        open_dataset(tmp_path, "loaddata", label_column="Metadata_Treatment")


def test_loaddata_without_pathname_column_is_refused(tmp_path):
    write_loaddata(tmp_path)
    table = pd.read_csv(tmp_path / "load_data.csv").drop(columns="PathName_OrigRNA")
    table.to_csv(tmp_path / "load_data.csv", index=False)
    with pytest.raises(LayoutError, match=r"without PathName_ columns for \['OrigRNA'\]"):
        open_dataset(tmp_path, "loaddata")


def test_feature_tables_carry_the_pattern_metadata(tmp_path):
    write_site(tmp_path, [f"PL7_C04f02d{c}.tif" for c in range(2)], seed=5, shape=(40, 40))
    ds = open_dataset(tmp_path, "pattern", channel_names={"d0": "DNA", "d1": "Actin"})
    config = FeatureConfig.from_dict({"preset": "minimal", "dna_channel": "DNA", "cyto_channel": "Actin"})
    cells, row = extract_sample(ds[0], config)
    assert {"Metadata_Plate", "Metadata_Well", "Metadata_Site"} <= set(cells.columns)
    assert (cells["Metadata_Well"] == "C04").all()
    assert list(row[["Metadata_Plate", "Metadata_Well", "Metadata_Site"]].iloc[0]) == ["PL7", "C04", "02"]


def test_real_examplefly_files_through_a_regex_and_loaddata(tmp_path, example_fly):
    folder = example_fly
    ds = open_dataset(folder, "pattern", pattern=r"(?P<plate>\d+)_POS(?P<site>\d+)_(?P<channel>[DFR])",
                      channel_names={"D": "DNA", "F": "PH3", "R": "Actin"})
    assert len(ds) == 3 and ds.channel_names == ("DNA", "PH3", "Actin")
    assert sorted(ds.ids) == ["01_002", "01_076", "01_218"]
    image = ds.get("01_076").image
    assert image.shape[0] == 3 and image.shape[1:] == tifffile.imread(folder / "01_POS076_D.TIF").shape
    rows = [{**{f"FileName_{c}": f"01_POS{pos}_{c}.TIF" for c in "DFR"},
             **{f"PathName_{c}": str(folder) for c in "DFR"}, "Metadata_Site": pos}
            for pos in ("002", "076", "218")]
    pd.DataFrame(rows).to_csv(tmp_path / "load_data.csv", index=False)
    table = open_dataset(tmp_path)
    assert table.layout == "loaddata" and len(table) == 3
    np.testing.assert_array_equal(table[1].image, image)


def test_real_examplecolocalization_pngs_through_a_template(example_colocalization):
    ds = open_dataset(example_colocalization, "pattern",
                      pattern="{plate}_{site}_N_{channel}", channel_names={"G": "Cy3", "R": "Cy5"})
    assert sorted(ds.ids) == ["0_1", "0_2"] and ds.channel_names == ("Cy3", "Cy5")
    assert ds[0].image.ndim == 3 and ds[0].image.shape[0] == 2


# -- files whose channels are the file's own: RGB JPEG/PNG, multi-sample TIFF ----------------
def test_rgb_jpeg_and_multisample_tiff_are_samples_with_their_channels(tmp_path):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:20, 0:30]
    rgb = np.stack([xx * 8, yy * 12, 200 - xx * 4], axis=-1).astype(np.uint8)  # smooth: JPEG-friendly
    Image.fromarray(rgb).save(tmp_path / "P1_A01_s1.png")
    Image.fromarray(rgb).save(tmp_path / "P1_A01_s2.jpg", quality=95, subsampling=0)
    ds = open_dataset(tmp_path, "pattern", pattern="{plate}_{well}_s{site}")
    assert ds.channel_names == ("C1", "C2", "C3") and sorted(ds.ids) == ["P1_A01_1", "P1_A01_2"]
    np.testing.assert_array_equal(ds.get("P1_A01_1").image, np.moveaxis(rgb, -1, 0))
    jpeg = ds.get("P1_A01_2").image.astype(int)
    assert jpeg.shape == (3, 20, 30) and np.abs(jpeg - np.moveaxis(rgb, -1, 0)).mean() < 3
    stack = rng.integers(0, 65535, (4, 20, 30), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "Q.tif", stack,
                     planarconfig="separate", photometric="minisblack")
    named = open_dataset(tmp_path, "pattern", pattern=r"(?P<plate>Q)",
                         channel_names=["DNA", "ER", "RNA", "Mito"])
    assert named.channel_names == ("DNA", "ER", "RNA", "Mito")
    np.testing.assert_array_equal(named[0].image, stack)


def test_channel_mapping_without_channel_group_is_refused(tmp_path):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "P1_A01_s1.png")
    with pytest.raises(LayoutError, match="no 'channel' group"):
        open_dataset(tmp_path, "pattern", pattern="{plate}_{well}_s{site}", channel_names={"R": "DNA"})


# -- convert --to png ------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_convert_keeps_bit_depth_and_values(tmp_path, dtype):
    image = np.random.default_rng(1).integers(0, np.iinfo(dtype).max, (24, 18), dtype=dtype)
    tifffile.imwrite(tmp_path / "a.tif", image)
    (out,) = convert_image(tmp_path / "a.tif", tmp_path / "png" / "a.png")
    with Image.open(out) as im:
        assert im.format == "PNG" and im.mode == ("L" if dtype == np.uint8 else "I;16")
    back = read_image(out)
    assert back.dtype == dtype
    np.testing.assert_array_equal(back[0], image)


def test_convert_rgb_tiff_to_rgb_png_and_splits_other_stacks_on_request(tmp_path):
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 255, (10, 12, 3), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "rgb.tif", rgb, photometric="rgb")
    (out,) = convert_image(tmp_path / "rgb.tif", tmp_path / "rgb.png")
    np.testing.assert_array_equal(read_image(out), np.moveaxis(rgb, -1, 0))
    stack = rng.integers(0, 65535, (3, 10, 12), dtype=np.uint16)
    tifffile.imwrite(tmp_path / "s.tif", stack, planarconfig="separate", photometric="minisblack")
    with pytest.raises(ConvertError, match=r"s.tif has 3 uint16 channels.*--split-channels"):
        convert_image(tmp_path / "s.tif", tmp_path / "s.png")
    parts = convert_image(tmp_path / "s.tif", tmp_path / "s.png", split_channels=True)
    assert [p.name for p in parts] == ["s_c1.png", "s_c2.png", "s_c3.png"]
    for k, part in enumerate(parts):
        np.testing.assert_array_equal(read_image(part)[0], stack[k])


def test_convert_refuses_float_pixels(tmp_path):
    tifffile.imwrite(tmp_path / "f.tif", np.linspace(0, 1, 20, dtype=np.float32).reshape(4, 5))
    with pytest.raises(ConvertError, match=r"f.tif: pixels are float32"):
        convert_image(tmp_path / "f.tif", tmp_path / "f.png")
    assert not (tmp_path / "f.png").exists()


def test_convert_command_turns_a_loaddata_dataset_into_png(tmp_path):
    images = write_loaddata(tmp_path / "tif")
    assert main(["convert", str(tmp_path / "tif"), "--out", str(tmp_path / "png")]) == 0
    assert not list((tmp_path / "png").rglob("*.tif"))
    ds = open_dataset(tmp_path / "png", label_column="Metadata_Compound")
    assert ds.paths_of(0)[0].endswith(".png")
    for sid, image in images.items():
        np.testing.assert_array_equal(ds.get(sid).image, image)
    again = convert_dataset(tmp_path / "tif", tmp_path / "png")
    assert again.converted == [] and len(again.kept) == 6


# -- plate maps: labels and well types of pattern / LoadData wells ---------------------------
def test_platemap_labels_pattern_wells_and_marks_controls(tmp_path):
    for well in ("D03", "E05", "F07"):
        write_site(tmp_path, [f"PL1_{well}f00d{c}.tif" for c in range(2)], seed=1)
    pd.DataFrame({"plate": ["PL1", "PL1"], "well": ["d03", "E05"], "compound": ["DMSO", "taxol"],
                  "well_type": ["negative_control", "treatment"],
                  "Metadata_Dose": ["0", "1.5"]}).to_csv(tmp_path / "platemap.csv", index=False)
    ds = open_dataset(tmp_path, "pattern", platemap="platemap.csv", label_column="compound")
    assert list(ds.labels) == ["DMSO", "taxol", None]  # F07 is not in the map
    control = ds.get("PL1_D03_00").metadata
    assert (control["Metadata_WellType"], control["Metadata_Dose"]) == ("negative_control", "0")
    assert list(ds.index["Metadata_WellType"][:2]) == ["negative_control", "treatment"]


def test_platemap_without_label_column_is_refused(tmp_path):
    write_site(tmp_path, [f"PL1_A01f00d{c}.tif" for c in range(2)], seed=1)
    pd.DataFrame({"well": ["A01"], "x": ["1"]}).to_csv(tmp_path / "map.csv", index=False)
    with pytest.raises(MetadataMismatchError, match=r"map.csv needs .*'compound'"):
        open_dataset(tmp_path, "pattern", platemap="map.csv", label_column="compound")


def test_platemap_and_class_group_together_are_refused(tmp_path):
    with pytest.raises(LayoutError, match="'class' group and a platemap"):
        PatternDataset(tmp_path, pattern="{class}_{well}_w{channel}", platemap="map.csv")


def test_loaddata_labels_from_a_platemap(tmp_path):
    write_loaddata(tmp_path)
    pd.DataFrame({"Metadata_Plate": ["BR1", "BR2"], "Metadata_Well": ["A01", "B02"],
                  "pert": ["DMSO", "taxol"], "Metadata_WellType": ["negative_control", "treatment"]}
                 ).to_csv(tmp_path / "platemap.csv", index=False)
    ds = open_dataset(tmp_path, platemap="platemap.csv", label_column="pert")
    assert list(ds.labels) == ["DMSO", "DMSO", "taxol"]
    assert ds.get("BR1_A01_2").metadata["Metadata_WellType"] == "negative_control"
