"""Segmentation: nuclei, cells, cytoplasm, whole objects, and truth on synthetic Cell Painting."""

from __future__ import annotations

import numpy as np
import pytest

from cellcompare.features import (
    SegmentationError,
    cytoplasm,
    segment_cells,
    segment_nuclei,
    segment_whole_object,
)


def _disks(centers, radius, size=96, value=1.0):
    yy, xx = np.mgrid[:size, :size]
    image = np.zeros((size, size))
    for cy, cx in centers:
        image[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2] = value
    return image


@pytest.mark.parametrize("method", ["otsu", "minimum_cross_entropy"])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32])
def test_separate_disks_are_found_with_their_area(method, dtype):
    rng = np.random.default_rng(0)
    image = _disks([(20, 20), (60, 70)], 8) * 200 + 30 + rng.normal(0, 10, (96, 96)).clip(-25, 25)
    labels = segment_nuclei(image.astype(dtype), threshold=method, smoothing_sigma=0.5)
    assert labels.max() == 2
    areas = np.bincount(labels.ravel())[1:]
    np.testing.assert_allclose(areas, np.pi * 64, rtol=0.05)


@pytest.mark.parametrize("declump", ["distance", "intensity"])
def test_touching_disks_are_declumped(declump):
    base = _disks([(48, 36), (48, 58)], 11)
    # intensity declumping needs brighter centres, as real nuclei have
    yy, xx = np.mgrid[:96, :96]
    bumps = sum(np.exp(-((yy - 48) ** 2 + (xx - cx) ** 2) / 60.0) for cx in (36, 58))
    labels = segment_nuclei(base * (0.5 + bumps), declump=declump, smoothing_sigma=1.0)
    assert labels.max() == 2
    assert segment_nuclei(base, declump="none").max() == 1


def test_size_and_border_filters():
    image = _disks([(30, 30), (70, 70)], 9) + _disks([(10, 80)], 2) + _disks([(0, 40)], 8)
    labels = segment_nuclei(image, min_area=50, exclude_border=True, smoothing_sigma=0)
    assert labels.max() == 2
    assert segment_nuclei(image, min_area=50, max_area=200, smoothing_sigma=0).max() == 1  # border half-disk
    with pytest.raises(SegmentationError, match="2-D"):
        segment_nuclei(np.zeros((2, 8, 8)))
    with pytest.raises(SegmentationError, match="threshold method"):
        segment_nuclei(image, threshold="magic")


def test_cells_grow_from_nuclei_and_cytoplasm_is_the_difference():
    nuclei = segment_nuclei(_disks([(30, 30), (30, 66)], 6), smoothing_sigma=0)
    noise = np.random.default_rng(1).uniform(0, 0.1, (96, 96))
    cyto_img = _disks([(30, 30), (30, 66)], 16) * 0.6 + noise
    cells = segment_cells(cyto_img, nuclei, smoothing_sigma=0)
    assert set(np.unique(cells)) == {0, 1, 2}
    assert np.all(cells[nuclei > 0] == nuclei[nuclei > 0])
    np.testing.assert_allclose(np.bincount(cells.ravel())[1:], np.pi * 256, rtol=0.05)
    cyto = cytoplasm(cells, nuclei)
    assert not np.any(cyto[nuclei > 0])
    assert (np.bincount(cyto.ravel())[1:] == np.bincount(cells.ravel())[1:] - np.bincount(nuclei.ravel())[1:]).all()
    with pytest.raises(SegmentationError, match="shape"):
        segment_cells(cyto_img, nuclei[:10])


def test_whole_object_is_largest_component_with_holes_filled():
    image = _disks([(48, 48)], 30) - _disks([(48, 48)], 6) + _disks([(5, 5)], 3)
    labels = segment_whole_object(image, smoothing_sigma=0)
    assert labels.max() == 1 and labels[48, 48] == 1 and labels[5, 5] == 0
    assert segment_whole_object(np.zeros((10, 10))).max() == 0


def _iou_matches(truth: np.ndarray, pred: np.ndarray) -> list[float]:
    ious = []
    for t in range(1, int(truth.max()) + 1):
        mask = truth == t
        if not mask.any():
            continue
        overlap = np.bincount(pred[mask], minlength=pred.max() + 1)
        overlap[0] = 0
        p = int(overlap.argmax())
        other = pred == p
        ious.append(float((mask & other).sum() / (mask | other).sum()) if p else 0.0)
    return ious


def test_synthetic_cellpainting_matches_truth(tmp_path):
    from cellcompare.datasets import open_dataset, synth
    from cellcompare.datasets.synth.cellpainting import read_truth

    root = synth.make_cellpainting(tmp_path / "cp", classes=2, per_class=2, size=192, plates=1)
    ds = open_dataset(root)
    for sample in ds:
        truth, _ = read_truth(root, sample.id)
        labels = segment_nuclei(sample.float_image[0])
        n_true = len(np.unique(truth)) - 1
        assert abs(labels.max() - n_true) <= 0.1 * n_true, (sample.id, labels.max(), n_true)
        assert np.median(_iou_matches(truth, labels)) >= 0.8, sample.id
