"""AreaShape kernel (features.shape) equals cp_measure's get_sizeshape, and closed forms."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage
from cp_measure.bulk import get_core_measurements

from cellcompare.features.shape import area_shape

SIZESHAPE = get_core_measurements()["sizeshape"]


def _assert_parity(labels: np.ndarray) -> None:
    ours, ref = area_shape(labels), SIZESHAPE(labels, None)
    assert list(ours) == list(ref)
    for key, expected in ref.items():
        np.testing.assert_allclose(ours[key], np.asarray(expected, float), rtol=1e-6, atol=1e-12,
                                   equal_nan=True, err_msg=key)


def _tricky_objects() -> np.ndarray:
    """Holes, a diagonal-leaking hole, a line, a single pixel, image-border and touching objects."""
    yy, xx = np.mgrid[:64, :64]
    labels = np.zeros((64, 64), np.int32)
    labels[(yy - 12) ** 2 + (xx - 14) ** 2 < 100] = 1
    labels[(yy - 12) ** 2 + (xx - 14) ** 2 < 9] = 0                 # a hole: Euler 0
    labels[(yy - 12) ** 2 + (xx - 30) ** 2 < 49] = 2                 # touches 1
    labels[30:40, 0:12] = 3                                          # on the image border
    labels[32:38, 3:9] = 0
    labels[35, 2] = 0                                                # hole open only diagonally?
    labels[34, 1:3] = 0
    labels[50, 5:40] = 4                                             # a one-pixel-wide line
    labels[62, 2] = 5                                                # a single pixel
    labels[40:63, 44:63] = 6                                         # a ring with a nested piece
    labels[44:59, 48:59] = 0
    labels[50:53, 51:54] = 7
    for i in range(12):                                              # a staircase (concave)
        labels[20 + i, 40 + i:52] = 8
    return labels


@pytest.mark.filterwarnings("ignore::RuntimeWarning")               # 1-pixel object: perimeter 0
def test_area_shape_equals_cp_measure_on_tricky_objects():
    _assert_parity(_tricky_objects())


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_area_shape_equals_cp_measure_on_random_blobs(seed):
    rng = np.random.default_rng(seed)
    noise = scipy.ndimage.gaussian_filter(rng.random((96, 96)), 2.5)
    # ragged, holed objects touching the image edges
    labels, _ = scipy.ndimage.label(noise > np.quantile(noise, 0.55))
    _assert_parity(labels.astype(np.int32))


def test_square_and_disk_closed_forms():
    labels = np.zeros((40, 40), np.int32)
    labels[2:7, 2:7] = 1                                             # 5x5 square
    yy, xx = np.mgrid[:40, :40]
    labels[(yy - 25) ** 2 + (xx - 25) ** 2 <= 100] = 2               # disk of radius 10
    out = area_shape(labels)
    np.testing.assert_array_equal(out["Area"], [25, 317])            # Gauss circle count, r = 10
    assert out["Perimeter"][0] == 16 and out["ConvexArea"][0] == 25 and out["Solidity"][0] == 1
    assert out["EulerNumber"].tolist() == [1, 1] and out["FilledArea"].tolist() == [25, 317]
    # nearest outside pixel of the disk's centre: (1, 10) away, as 1 + 100 > 100
    np.testing.assert_allclose(out["MaximumRadius"], [3, np.sqrt(101)])
    np.testing.assert_allclose([out["Center_X"][1], out["Center_Y"][1]], [25, 25])
    assert out["Eccentricity"][1] < 1e-9                                # rotation symmetric


def test_hole_changes_euler_and_filled_area_only_by_its_pixels():
    labels = np.zeros((20, 20), np.int32)
    labels[3:16, 3:16] = 1
    labels[8:11, 8:11] = 0                                           # 3x3 hole
    out = area_shape(labels)
    assert out["Area"][0] == 169 - 9 and out["FilledArea"][0] == 169
    assert out["EulerNumber"][0] == 0 and out["ConvexArea"][0] == 169


def test_area_shape_is_empty_without_objects():
    assert area_shape(np.zeros((8, 8), np.int32)) == {}


def test_area_shape_rejects_missing_labels():
    labels = np.zeros((8, 8), np.int32)
    labels[1, 1], labels[5, 5] = 1, 3
    with pytest.raises(ValueError, match="label 2"):
        area_shape(labels)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_compiled_edt_equals_scipy_exactly(seed):
    from cellcompare.features.distance import edt

    rng = np.random.default_rng(seed)
    mask = (rng.random((23, 31)) < 0.8).astype(np.uint8)
    mask[:, 5] = 1                                                   # columns/rows without zeros
    mask[7, :] = 1
    np.testing.assert_array_equal(edt(mask), scipy.ndimage.distance_transform_edt(mask))
