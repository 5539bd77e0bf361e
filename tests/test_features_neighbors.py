"""Neighbors family (CellProfiler's MeasureObjectNeighbors) on layouts with closed forms."""

from __future__ import annotations

import numpy as np
import pytest

from cellcompare.features import FeatureConfig, FeatureConfigError
from cellcompare.features.measure import measure_objects
from cellcompare.features.neighbors import measure_neighbors


def _disk_grid(rows: int = 4, cols: int = 4, radius: int = 4, spacing: int = 12) -> np.ndarray:
    """Equal disks on a square grid, labelled row by row from 1."""
    size_r, size_c = rows * spacing, cols * spacing
    yy, xx = np.mgrid[:size_r, :size_c]
    labels = np.zeros((size_r, size_c), np.int32)
    for k in range(rows * cols):
        cy, cx = spacing // 2 + spacing * (k // cols), spacing // 2 + spacing * (k % cols)
        labels[(yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2] = k + 1
    return labels


def test_disk_grid_counts_distances_and_angles():
    # disks of radius 4, 12 px apart: 3 px gaps, so no touching; within 5 px the four
    # horizontal/vertical neighbours count, the diagonal ones (edge gap ~9 px) do not
    feats = measure_neighbors(_disk_grid(), distance=5)
    grid = {k: v.reshape(4, 4) for k, v in feats.items()}
    expected = np.array([[2, 3, 3, 2], [3, 4, 4, 3], [3, 4, 4, 3], [2, 3, 3, 2]])
    np.testing.assert_array_equal(grid["Neighbors_NumberOfNeighbors_5"], expected)
    np.testing.assert_array_equal(grid["Neighbors_NumberOfNeighbors_Adjacent"], 0)
    np.testing.assert_array_equal(grid["Neighbors_PercentTouching_Adjacent"], 0)
    np.testing.assert_allclose(grid["Neighbors_FirstClosestDistance_Adjacent"], 12.0)
    np.testing.assert_allclose(grid["Neighbors_SecondClosestDistance_Adjacent"], 12.0)
    # ties go to the lower label: top-edge disks take left then right (180°),
    # every other disk takes two perpendicular neighbours (90°)
    angles = grid["Neighbors_AngleBetweenNeighbors_Adjacent"]
    np.testing.assert_allclose(angles[0, 1:3], 180.0)
    np.testing.assert_allclose(angles[1:], 90.0)
    np.testing.assert_allclose(angles[0, [0, 3]], 90.0)
    assert grid["Neighbors_FirstClosestObjectNumber_Adjacent"][0, 0] == 2    # right neighbour
    assert grid["Neighbors_FirstClosestObjectNumber_Adjacent"][2, 2] == 7    # the one above
    # every touching neighbour covers the same share of a disk's outline
    touch = grid["Neighbors_PercentTouching_5"]
    share = touch[0, 0] / 2
    np.testing.assert_allclose(touch, expected * share)
    assert 0 < share < 25


def test_two_touching_squares_percent_touching():
    labels = np.zeros((10, 20), np.int32)
    labels[:, :10] = 1
    labels[:, 10:] = 2
    feats = measure_neighbors(labels, distance=5)
    # outline of a 10x10 square: 36 pixels; 10 of them touch the other square, and within
    # 5.5 px also 4 more on each of the top and bottom rows
    np.testing.assert_allclose(feats["Neighbors_PercentTouching_Adjacent"], 1000 / 36)
    np.testing.assert_allclose(feats["Neighbors_PercentTouching_5"], 50.0)
    np.testing.assert_array_equal(feats["Neighbors_NumberOfNeighbors_Adjacent"], [1, 1])
    np.testing.assert_array_equal(feats["Neighbors_FirstClosestObjectNumber_Adjacent"], [2, 1])
    np.testing.assert_allclose(feats["Neighbors_FirstClosestDistance_Adjacent"], 10.0)
    # CellProfiler's convention with fewer than three objects: second-closest measures are 0
    np.testing.assert_array_equal(feats["Neighbors_SecondClosestDistance_Adjacent"], 0)
    np.testing.assert_array_equal(feats["Neighbors_AngleBetweenNeighbors_Adjacent"], 0)


def test_diagonal_contact_is_adjacent_only_through_the_touching_disk():
    # 8-connected contact: strel_disk(1) is a cross, so a diagonal-only contact is not
    # "adjacent", but the outline (3x3 reach) still counts it as touching
    labels = np.zeros((6, 6), np.int32)
    labels[:3, :3] = 1
    labels[3:, 3:] = 2
    feats = measure_neighbors(labels, distance=2)
    np.testing.assert_array_equal(feats["Neighbors_NumberOfNeighbors_Adjacent"], [0, 0])
    np.testing.assert_array_equal(feats["Neighbors_NumberOfNeighbors_2"], [1, 1])
    np.testing.assert_allclose(feats["Neighbors_PercentTouching_Adjacent"], [100 / 8, 100 / 8])


def test_neighbors_in_measure_objects_use_original_labels_and_config_distance():
    labels = _disk_grid(rows=1, cols=3) * 10     # labels 10, 20, 30; edges 4 px apart
    image = np.full((1, *labels.shape), 0.5)
    config = FeatureConfig(preset="minimal", families=("Neighbors",), neighbor_distance=4)
    ids, feats = measure_objects("Nuclei", labels, image, ("DNA",), config)
    assert list(ids) == [10, 20, 30]
    np.testing.assert_array_equal(feats["Nuclei_Neighbors_FirstClosestObjectNumber_Adjacent"],
                                  [20, 10, 20])
    np.testing.assert_array_equal(feats["Nuclei_Neighbors_NumberOfNeighbors_4"], [1, 2, 1])
    assert "Nuclei_Neighbors_NumberOfNeighbors_5" not in feats
    assert "Neighbors" in FeatureConfig(preset="full").active_families


def test_single_object_and_bad_distance():
    labels = np.zeros((8, 8), np.int32)
    labels[2:5, 2:5] = 1
    feats = measure_neighbors(labels)
    assert feats["Neighbors_NumberOfNeighbors_Adjacent"].tolist() == [0.0]
    assert feats["Neighbors_FirstClosestObjectNumber_Adjacent"].tolist() == [0.0]
    with pytest.raises(ValueError, match="distance"):
        measure_neighbors(labels, distance=0)
    with pytest.raises(FeatureConfigError, match="neighbor_distance"):
        FeatureConfig(neighbor_distance=0)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_neighbour_pairs_seen_from_outlines_equal_the_search_from_every_pixel(seed):
    """The outline-only search finds exactly the pairs a search from every pixel finds."""
    from centrosome.outline import outline
    from skimage.measure import label
    from skimage.segmentation import expand_labels

    from cellcompare.features.neighbors import _near_other_objects, _offsets

    rng = np.random.default_rng(seed)
    seeds = np.zeros((80, 90), np.int64)
    seeds[rng.integers(0, 80, 30), rng.integers(0, 90, 30)] = 1
    labels = expand_labels(label(seeds), distance=int(rng.integers(2, 7)))
    labels[rng.random(labels.shape) < 0.05] = 0            # holes and ragged edges
    labels = np.ascontiguousarray(labels, np.int64)
    n = int(labels.max())
    edge = outline(labels)
    for d in (1, 3, 5):
        every, _ = _near_other_objects(labels, labels, _offsets(d), n, False)
        outlined, _ = _near_other_objects(labels, edge, _offsets(d), n, False)
        assert every.sum() > 0
        np.testing.assert_array_equal(outlined, every)
