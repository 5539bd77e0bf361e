"""Synthetic generators: determinism, layout, truth masks, and measurable class differences."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from skimage.measure import regionprops
from skimage.segmentation import clear_border

from cellcompare.datasets import open_dataset
from cellcompare.datasets.synth import (
    STAGES_GROUP_PATTERN,
    cellpainting_classes,
    make_cellpainting,
    make_stages,
    read_truth,
)


def file_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def cellpainting(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cp") / "data"
    return make_cellpainting(out, classes=2, per_class=6, seed=3, size=128, plates=2)


def test_cellpainting_deterministic(tmp_path):
    a = file_bytes(make_cellpainting(tmp_path / "a", classes=2, per_class=2, seed=5, size=64, plates=2))
    b = file_bytes(make_cellpainting(tmp_path / "b", classes=2, per_class=2, seed=5, size=64, plates=2))
    c = file_bytes(make_cellpainting(tmp_path / "c", classes=2, per_class=2, seed=6, size=64, plates=2))
    assert a == b
    assert a.keys() == c.keys() and a != c


def test_cellpainting_jobs_write_the_same_files(tmp_path):
    one = file_bytes(make_cellpainting(tmp_path / "one", classes=2, per_class=3, seed=5, size=64, plates=2))
    two = file_bytes(make_cellpainting(tmp_path / "two", classes=2, per_class=3, seed=5, size=64, plates=2,
                                       jobs=2))
    assert len(one) > 12 and one == two


def test_cellpainting_layout(cellpainting):
    ds = open_dataset(cellpainting)
    assert ds.layout == "rxrx1" and len(ds) == 12
    assert ds.classes == ("siRNA_0001", "siRNA_0002")
    assert sorted(set(ds.groups)) == ["HEPG2-01_P1", "HEPG2-01_P2"]
    sample = ds[0]
    assert sample.image.shape == (6, 128, 128) and sample.image.dtype == np.uint8
    assert set(ds.index.columns) >= {"cell_type", "experiment", "plate", "well", "site", "sirna"}
    assert ds.index.well.str.fullmatch(r"[B-O]\d\d").all()


def test_cellpainting_truth_matches_images(cellpainting):
    ds = open_dataset(cellpainting)
    for i in range(3):
        sample = ds[i]
        nuclei, cells = read_truth(cellpainting, sample.id)
        assert 15 <= nuclei.max() <= 40
        dna = sample.image[0].astype(float)
        assert dna[nuclei > 0].mean() > 3 * dna[cells == 0].mean()
        # every nucleus lies inside its own cell
        np.testing.assert_array_equal(cells[nuclei > 0], nuclei[nuclei > 0])
        assert set(np.unique(cells)) == set(np.unique(nuclei))


def test_cellpainting_nuclear_area_differs_by_configured_factor(cellpainting):
    ds = open_dataset(cellpainting)
    areas = {c: [] for c in ds.classes}
    for sample_id, label in zip(ds.ids, ds.labels):
        nuclei, _ = read_truth(cellpainting, sample_id)
        areas[label] += [r.area for r in regionprops(clear_border(nuclei))]
    styles = cellpainting_classes(2, seed=3)
    expected = styles["siRNA_0002"].nuclear_area / styles["siRNA_0001"].nuclear_area
    measured = np.mean(areas["siRNA_0002"]) / np.mean(areas["siRNA_0001"])
    assert abs(expected - 1) > 0.2  # two classes sit at the ends of the +-20 % range
    assert measured == pytest.approx(expected, rel=0.1)


def test_class_differences_written(cellpainting):
    diffs = json.loads((cellpainting / "class_differences.json").read_text())
    assert sorted(diffs) == ["siRNA_0001", "siRNA_0002"]
    assert diffs["siRNA_0001"]["params"]["nuclear_area"] == pytest.approx(
        cellpainting_classes(2, seed=3)["siRNA_0001"].nuclear_area, abs=1e-4)
    text = (cellpainting / "CLASS_DIFFERENCES.md").read_text().split("## ")[1:]
    assert [len(block.strip().splitlines()) for block in text] == [4, 4]  # heading + 3 lines


def test_cellpainting_classes_spread():
    styles = cellpainting_classes(5, seed=0)
    areas = sorted(s.nuclear_area for s in styles.values())
    np.testing.assert_allclose(areas, [0.8, 0.9, 1.0, 1.1, 1.2])
    assert cellpainting_classes(5, seed=0) == styles


def test_stages_deterministic_and_readable(tmp_path):
    kwargs = dict(classes=3, per_class=2, seed=1, size=(60, 150))
    a = file_bytes(make_stages(tmp_path / "a", **kwargs))
    assert a == file_bytes(make_stages(tmp_path / "b", **kwargs))
    ds = open_dataset(tmp_path / "a", group_pattern=STAGES_GROUP_PATTERN)
    assert ds.layout == "folders" and ds.classes == ("stage1", "stage2", "stage3")
    assert ds[0].image.dtype == np.uint16 and ds[0].image.shape == (1, 60, 150)
    assert sorted(set(ds.groups)) == ["b1", "b2"]
    assert len(json.loads((tmp_path / "a" / "class_differences.json").read_text())) == 3


def _transverse_contrast(image: np.ndarray) -> float:
    """Mean absolute second difference of the column profile inside the object (stripes, furrows)."""
    profile = np.percentile(image, 75, axis=0)
    inside = profile > (profile.min() + profile.max()) / 2
    return float(np.abs(np.diff(profile[inside], 2)).mean() / profile[inside].mean())


def test_stages_pattern_increases_with_stage(tmp_path):
    make_stages(tmp_path, classes=3, per_class=3, seed=0, size=(140, 370))
    ds = open_dataset(tmp_path)
    contrast = {c: np.mean([_transverse_contrast(ds[i].float_image[0])
                            for i in np.flatnonzero(ds.labels == c)]) for c in ds.classes}
    assert contrast["stage1"] < contrast["stage2"] < contrast["stage3"]


def test_cellpainting_sites_per_well(tmp_path):
    make_cellpainting(tmp_path, classes=2, per_class=3, seed=0, size=48, plates=3, sites_per_well=2)
    ds = open_dataset(tmp_path)
    index = ds.index
    assert len(ds) == 2 * 3 * 2  # classes x wells per class x sites
    assert index.groupby("well_id").site.apply(lambda s: sorted(s) == [1, 2]).all()
    # each class has one well on every plate, so group-aware splits see every class
    assert (index.groupby(["plate", "sirna"]).well_id.nunique() == 1).all()
    assert index.groupby("plate").sirna.nunique().eq(2).all()
