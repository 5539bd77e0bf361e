"""Bring your own label images (cellpose, StarDist, CellProfiler): checked, then measured."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from skimage.draw import disk

from cellcompare.datasets import open_dataset
from cellcompare.datasets.masks import MaskError, read_labels
from cellcompare.features import FeatureConfig, load_table, run_extraction

SHAPE = (64, 64)


def _site(tmp_path, name: str, centres) -> np.ndarray:
    dna = np.zeros(SHAPE, np.uint8)
    labels = np.zeros(SHAPE, np.uint16)
    for k, (r, c) in enumerate(centres, start=1):
        dna[disk((r, c), 6)] = 200
        labels[disk((r, c), 6)] = 10 * k                     # cellpose numbers need not be 1..n
    labels[disk((58, 6), 3)] = 99                            # an object no threshold would find
    actin = np.clip(dna.astype(int) // 2 + 40, 0, 255).astype(np.uint8)
    Image.fromarray(dna).save(tmp_path / "data" / f"{name}_DNA.tif")
    Image.fromarray(actin).save(tmp_path / "data" / f"{name}_Actin.tif")
    Image.fromarray(labels).save(tmp_path / "data" / "masks" / f"{name}_nuclei.png")
    return labels


@pytest.fixture
def dataset(tmp_path):
    (tmp_path / "data" / "masks").mkdir(parents=True)
    _site(tmp_path, "s1", [(16, 16), (16, 48), (48, 32)])
    _site(tmp_path, "s2", [(20, 20), (44, 44)])
    return tmp_path / "data"


def test_extraction_measures_the_given_nuclei(dataset, tmp_path):
    config = FeatureConfig(preset="minimal", objects=("Nuclei", "Cells"), qc_samples=0,
                           masks={"Nuclei": "masks/{sample_id}_nuclei.png"})
    out = run_extraction(dataset, tmp_path / "out", config)
    images = load_table(out)
    assert images.set_index("Metadata_sample_id")["Metadata_Object_Count"].to_dict() == {"s1": 4, "s2": 3}
    cells = load_table(out, level="cell")
    big, small = len(disk((10, 10), 6)[0]), len(disk((10, 10), 3)[0])   # pixels of the given disks
    assert sorted(cells["Nuclei_AreaShape_Area"]) == [float(small)] * 2 + [float(big)] * 5
    assert (cells["Cells_AreaShape_Area"] >= cells["Nuclei_AreaShape_Area"]).all()


def test_a_template_field_the_sample_lacks_is_named(dataset, tmp_path):
    config = FeatureConfig(preset="minimal", masks={"Nuclei": "masks/{plate}_{sample_id}.png"})
    out = run_extraction(dataset, tmp_path / "out", config)
    errors = pd.read_csv(out / "errors.csv")
    assert len(errors) == 2 and errors["reason"].str.contains("uses \\['plate'\\]").all()


@pytest.mark.parametrize("bad, message", [
    (np.zeros((32, 64), np.uint16), "is 32x64; its image is 64x64"),
    (np.zeros((64, 64, 3), np.uint8), "has 3 planes"),
    (np.full((64, 64), 1.5, np.float32), "non-integer"),
    (np.full((64, 64), -1, np.int32), "negative"),
])
def test_an_invalid_label_image_is_refused_naming_the_file(tmp_path, bad, message):
    import tifffile

    path = tmp_path / "bad_mask.tif"
    tifffile.imwrite(path, bad)
    with pytest.raises(MaskError, match=message) as err:
        read_labels(path, SHAPE)
    assert str(path) in str(err.value)


def test_a_missing_label_image_is_a_logged_skip_naming_it(dataset, tmp_path):
    (dataset / "masks" / "s2_nuclei.png").unlink()
    config = FeatureConfig(preset="minimal", masks={"Nuclei": "masks/{sample_id}_nuclei.png"})
    out = run_extraction(dataset, tmp_path / "out", config)
    errors = pd.read_csv(out / "errors.csv")
    assert errors["sample_id"].tolist() == ["s2"]
    assert "s2_nuclei.png not found" in errors["reason"].iloc[0]
    assert load_table(out)["Metadata_sample_id"].tolist() == ["s1"]


def test_loaddata_objects_columns_name_the_masks(dataset, tmp_path):
    rows = [{"FileName_DNA": f"{s}_DNA.tif", "PathName_DNA": str(dataset),
             "FileName_Actin": f"{s}_Actin.tif", "PathName_Actin": str(dataset),
             "ObjectsFileName_Nuclei": f"{s}_nuclei.png", "ObjectsPathName_Nuclei": str(dataset / "masks"),
             "Metadata_Plate": "P1", "Metadata_Well": "A01", "Metadata_Site": s}
            for s in ("s1", "s2")]
    csv_dir = tmp_path / "ld"
    csv_dir.mkdir()
    pd.DataFrame(rows).to_csv(csv_dir / "load_data.csv", index=False)
    assert open_dataset(csv_dir)[0].metadata["objects_files"]["Nuclei"].endswith("s1_nuclei.png")
    config = FeatureConfig(preset="minimal", objects=("Nuclei",), masks={"Nuclei": "loaddata"})
    out = run_extraction(csv_dir, tmp_path / "out", config)
    assert load_table(out)["Metadata_Object_Count"].tolist() == [4, 3]


def test_cells_given_with_nuclei_are_numbered_by_their_nucleus(tmp_path):
    from cellcompare.datasets.masks import read_masks
    from cellcompare.datasets.sample import Sample

    nuclei = np.zeros(SHAPE, np.uint16)
    cells = np.zeros(SHAPE, np.uint16)
    for k, (r, c) in enumerate([(16, 16), (48, 48)], start=1):
        cells[disk((r, c), 12)] = 3 - k                      # cells numbered the other way round
        nuclei[disk((r, c), 5)] = k
    Image.fromarray(nuclei).save(tmp_path / "n.png")
    Image.fromarray(cells).save(tmp_path / "c.png")
    sample = Sample(id="s", image=np.zeros((1, *SHAPE), np.uint8))
    masks = read_masks(sample, {"Nuclei": "n.png", "Cells": "c.png"}, tmp_path)
    assert masks["Cells"][16, 16 + 10] == 1 and masks["Cells"][48, 48 + 10] == 2


def test_cell_crops_are_cut_around_the_given_nuclei(dataset):
    """A deep cell model sees the same objects as the features: one crop per given nucleus."""
    from cellcompare.deep.crops import sample_crops

    sample = open_dataset(dataset).get("s1")
    config = FeatureConfig(preset="minimal", masks={"Nuclei": "masks/{sample_id}_nuclei.png"})
    crops, cells = sample_crops(sample, config, crop_size=16)
    assert crops.shape == (4, 2, 16, 16)
    assert cells["Metadata_ObjectNumber"].tolist() == [1, 2, 3, 4]
    centres = sorted(zip(cells["Metadata_Location_Center_Y"].round(), cells["Metadata_Location_Center_X"].round()))
    assert centres == [(16.0, 16.0), (16.0, 48.0), (48.0, 32.0), (58.0, 6.0)]
