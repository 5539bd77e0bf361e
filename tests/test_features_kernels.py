"""Compiled / shared-geometry feature kernels equal cp_measure's own functions."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from cp_measure.bulk import get_core_measurements

from cellcompare.features.granularity import granularity, spectrum
from cellcompare.features.grouping import group_pixels
from cellcompare.features.radial import radial_distribution, radial_geometry
from cellcompare.features.zernike import radial_zernikes, shape_zernikes, zernike_basis

CORE = get_core_measurements()


def _touching_objects(size: int = 48, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three touching blobs (several propagation colours), a 1-pixel object, 3 channels."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    labels = np.zeros((size, size), np.int32)
    labels[(yy - 14) ** 2 + (xx - 14) ** 2 < 81] = 1
    labels[(yy - 14) ** 2 + (xx - 30) ** 2 < 64] = 2            # touches 1
    labels[(yy - 28) ** 2 + (xx - 22) ** 2 < 49] = 3            # touches 1 and 2
    labels[40, 40] = 4
    image = rng.random((3, size, size))
    image[2, :20] = 0.0                                           # zero rings: RadialCV 0/0 rule
    return labels, image


def _assert_equal_dicts(ours: dict, ref: dict) -> None:
    assert list(ours) == list(ref)
    for key, expected in ref.items():
        np.testing.assert_allclose(ours[key], np.asarray(expected, float), rtol=1e-6, atol=1e-12,
                                   equal_nan=True, err_msg=key)


def test_radial_distribution_and_zernikes_equal_cp_measure_on_touching_objects():
    labels, image = _touching_objects()
    geom = radial_geometry(labels)
    zernikes = radial_zernikes(zernike_basis(labels), image)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for c in range(3):
            ref = dict(CORE["radial_distribution"](labels, image[c]))
            ref.update(CORE["radial_zernikes"](labels, image[c]))
            _assert_equal_dicts({**radial_distribution(geom, image[c]), **zernikes[c]}, ref)
    assert radial_distribution(geom, image[2])["RadialDistribution_RadialCV_1of4"][0] == 0.0


@pytest.mark.filterwarnings("ignore::RuntimeWarning")      # 1-pixel object: radius 0
def test_shape_zernikes_equal_cp_measure():
    labels, _ = _touching_objects()
    _assert_equal_dicts(shape_zernikes(zernike_basis(labels)), CORE["zernike"](labels, None))


def test_granularity_spectrum_shared_by_object_types_equals_cp_measure():
    labels, image = _touching_objects(size=64)
    spectra = [spectrum(ch) for ch in image[:2]]
    grown = np.where(labels > 0, labels, 0)
    grown[50:60, 5:20] = 5                                        # a second "object type"
    for lab in (labels, grown):
        ours = granularity(lab, spectra)
        for c in range(2):
            _assert_equal_dicts(ours[c], CORE["granularity"](lab, image[c]))


def test_granularity_too_small_image_is_nan():
    labels = np.ones((6, 6), np.int32)
    (feats,) = granularity(labels, [spectrum(np.full((6, 6), 0.3))])
    assert np.isnan(feats["Granularity_1"]).all() and len(feats) == 16


def test_group_pixels_runs_in_c_order():
    labels = np.array([[0, 2, 2], [1, 0, 2], [1, 1, 0]])
    g = group_pixels(labels)
    assert g.index.tolist() == [3, 6, 7, 1, 2, 5]
    assert g.offsets.tolist() == [0, 3, 6] and g.sizes.tolist() == [3, 3]
    np.testing.assert_array_equal(g.values(np.arange(9.0).reshape(3, 3)), [3, 6, 7, 1, 2, 5])


@pytest.mark.parametrize("family", ["radial", "texture"])
def test_kernels_are_deterministic(family):
    from cellcompare.features.texture import get_texture

    labels, image = _touching_objects(seed=7)
    if family == "radial":
        runs = [radial_zernikes(zernike_basis(labels), image)[0] for _ in range(2)]
    else:
        runs = [get_texture(labels, image[0], 2, 64) for _ in range(2)]
    for key in runs[0]:
        np.testing.assert_array_equal(runs[0][key], runs[1][key])


@pytest.mark.parametrize("levels", [None, 4])
def test_reconstruction_and_erosion_equal_skimage_exactly(levels):
    import skimage.morphology as morph

    from cellcompare.features.granularity import _erode_cross, _reconstruct

    rng = np.random.default_rng(11)
    mask = rng.random((23, 31))
    if levels:                                   # plateaus exercise the ties
        mask = np.round(mask * levels) / levels
    cross = morph.disk(1, dtype=bool)
    seed = morph.erosion(morph.erosion(mask, footprint=cross), footprint=cross)
    np.testing.assert_array_equal(_erode_cross(mask), morph.erosion(mask, footprint=cross))
    np.testing.assert_array_equal(_reconstruct(seed, mask),
                                  morph.reconstruction(seed, mask, footprint=cross))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")      # 1-pixel object: perimeter 0
def test_sizeshape_groups_by_box_size_equal_one_call():
    from cellcompare.features.shape import area_shape, box_size_groups

    labels, _ = _touching_objects(size=128)
    labels[labels == 4] = 0
    labels[60:127, 0:128] = 4                    # one wide object beside small ones
    labels[45, 100] = 5
    groups = box_size_groups(labels, 5)
    assert sorted(np.concatenate(groups).tolist()) == [1, 2, 3, 4, 5] and len(groups) > 1
    ref = CORE["sizeshape"](labels, None)
    _assert_equal_dicts(area_shape(labels), ref)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("name", ["cellprofiler4", "cp_measure"])
def test_intensity_kernel_equals_cp_measure_with_nan_and_dark_objects(name):
    from cp_measure.bulk import get_core_measurements

    from cellcompare.features.conventions import get_convention
    from cellcompare.features.intensity import intensity, object_edges

    convention = get_convention(name)
    reference = get_core_measurements(legacy=convention.cp_measure_legacy)["intensity"]

    labels, image = _touching_objects(seed=3)
    image[0, 14, 14] = np.nan                     # non-finite pixel: left out, as cp_measure
    image[1][labels == 2] = 0.0                   # dark object: centre of mass undefined
    image[2][labels == 3] = 0.25                  # flat object: ties for the maximum
    groups = group_pixels(labels)
    ours = intensity(groups, object_edges(groups, labels), image, convention=convention)
    for c in range(3):
        _assert_equal_dicts(ours[c], reference(labels, image[c]))
    assert np.isnan(ours[1]["Location_CenterMassIntensity_X"][1])


def test_distance_to_edge_per_object_box_equals_centrosome():
    import centrosome.cpmorphology

    from cellcompare.features.radial import _distance_to_edge

    labels, _ = _touching_objects()
    labels[:5, :] = 6                             # object along the image border
    np.testing.assert_array_equal(_distance_to_edge(labels),
                                  centrosome.cpmorphology.distance_to_edge(labels))


@pytest.mark.parametrize("distinct", [5, 100_000])
def test_dense_ranks_by_codes_and_by_sorting_agree(distinct):
    from cellcompare.features.ranks import _dense_ranks, dense_ranks

    rng = np.random.default_rng(distinct)
    values = rng.integers(0, distinct, 400) / distinct
    offsets = np.array([0, 1, 1, 150, 399, 400])          # includes 1-pixel and empty objects
    ranks = dense_ranks(values, offsets)
    np.testing.assert_array_equal(ranks, _dense_ranks(values, offsets))
    obj = values[1:150]
    np.testing.assert_array_equal(ranks[1:150], np.unique(obj, return_inverse=True)[1])


def test_dense_ranks_hash_codes_equal_unique_per_object():
    """3,000 levels grow the hash table past its first size; ±0 and NaNs count once each."""
    from cellcompare.features.ranks import dense_ranks

    rng = np.random.default_rng(7)
    values = rng.integers(0, 3000, 20_000) / 3000
    values[rng.random(values.size) < 0.05] = -0.0
    values[rng.random(values.size) < 0.01] = np.nan
    offsets = np.array([0, 5000, 5003, 20_000])
    ranks = dense_ranks(values, offsets)
    for a, z in zip(offsets[:-1], offsets[1:]):
        np.testing.assert_array_equal(ranks[a:z], np.unique(values[a:z], return_inverse=True)[1])


def test_bucket_propagation_equals_a_heap_dijkstra_to_the_bit():
    """Radial centre distances: the bucket queue gives a heap Dijkstra's floats exactly."""
    import heapq

    from skimage.measure import label
    from skimage.segmentation import expand_labels

    from cellcompare.features.grouping import object_boxes
    from cellcompare.features.radial import _propagate_within_labels

    rng = np.random.default_rng(3)
    seeds = np.zeros((60, 70), np.int64)
    seeds[rng.integers(0, 60, 12), rng.integers(0, 70, 12)] = 1
    labels = expand_labels(label(seeds), distance=9)
    labels[rng.random(labels.shape) < 0.15] = 0            # ragged, non-convex objects
    n = int(labels.max())
    ci = np.array([np.argwhere(labels == k)[0][0] for k in range(1, n + 1)])
    cj = np.array([np.argwhere(labels == k)[0][1] for k in range(1, n + 1)])
    expected = np.full(labels.shape, -1.0)
    heap = []
    for i, j in zip(ci, cj):
        expected[i, j] = 0.0
        heapq.heappush(heap, (0.0, i * labels.shape[1] + j))
    done = np.zeros(labels.shape, bool)
    while heap:
        d, p = heapq.heappop(heap)
        i, j = divmod(p, labels.shape[1])
        if done[i, j]:
            continue
        done[i, j] = True
        for di in (-1, 0, 1):
            for dj in (-1, 0, 1):
                a, b = i + di, j + dj
                if (di or dj) and 0 <= a < 60 and 0 <= b < 70 and labels[a, b] == labels[i, j] \
                        and not done[a, b]:
                    nd = d + (np.sqrt(2.0) if di and dj else 1.0)
                    if expected[a, b] < 0 or nd < expected[a, b]:
                        expected[a, b] = nd
                        heapq.heappush(heap, (nd, a * labels.shape[1] + b))
    got = _propagate_within_labels(np.ascontiguousarray(labels, np.int64), ci.astype(np.int64),
                                   cj.astype(np.int64), object_boxes(labels, n))
    assert (got > 5).any()
    np.testing.assert_array_equal(got, expected)


# --- Intensity order statistics and edges, Texture inputs (issue 14) ---------------------


def _sorted_reference(vals: np.ndarray, offset: float) -> tuple[float, float, float, float]:
    """Quartiles, median and MAD by a full sort, with the kernel's interpolation formula."""
    def at(ranked, frac):
        pos = (ranked.size - 1 + offset) * frac
        lo = min(int(pos), ranked.size - 1)
        hi, f = min(lo + 1, ranked.size - 1), pos - lo
        return ranked[lo] * (1.0 - f) + ranked[hi] * f

    ranked = np.sort(vals)
    median = at(ranked, 0.5)
    return at(ranked, 0.25), median, at(np.sort(np.abs(vals - median)), 0.5), at(ranked, 0.75)


def _row_objects(samples: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """One object per row holding ``samples[k]`` in its first columns; ``(1, K, W)`` image."""
    width = max(s.size for s in samples) + 1
    labels = np.zeros((len(samples), width), np.int32)
    image = np.zeros((1, len(samples), width))
    for k, s in enumerate(samples):
        labels[k, :s.size] = k + 1
        image[0, k, :s.size] = s
    return labels, image


@pytest.mark.parametrize("name", ["cellprofiler4", "cp_measure"])
def test_intensity_order_statistics_equal_a_full_sort_exactly(name):
    from cellcompare.features.conventions import get_convention
    from cellcompare.features.intensity import intensity, object_edges

    convention = get_convention(name)

    rng = np.random.default_rng(14)
    samples = [rng.random(n) for n in (1, 2, 3, 5, 16, 63, 64, 65, 257)]
    samples += [
        np.round(rng.random(900) * 6) / 6,                   # few levels: ties everywhere
        np.r_[rng.random(700) * 1e-3, 1e6],                  # outlier: one histogram bucket
        rng.exponential(size=1000) ** 3,                     # skewed: wide MAD band
        -rng.random(400),
        np.full(300, 0.25),
        np.r_[rng.standard_normal(200), -1e308, 1e308],      # span overflows: plain selection
        np.tile(np.arange(8.0), 128),                        # sorted runs
    ]
    labels, image = _row_objects(samples)
    groups = group_pixels(labels)
    (ours,) = intensity(groups, object_edges(groups, labels), image, convention=convention)
    keys = ("Intensity_LowerQuartileIntensity", "Intensity_MedianIntensity",
            "Intensity_MADIntensity", "Intensity_UpperQuartileIntensity")
    for k, vals in enumerate(samples):
        assert tuple(ours[key][k] for key in keys) == _sorted_reference(vals, convention.rank_offset), k


@pytest.mark.parametrize("seed", [0, 1])
def test_object_edges_equal_skimage_find_boundaries(seed):
    import skimage.segmentation

    from cellcompare.features.intensity import object_edges

    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 9, (6, 7))                       # touching blocks, some background
    labels = np.kron(coarse, np.ones((5, 4), np.int64))[:-2]  # objects cut by every border
    labels[rng.random(labels.shape) < 0.05] = 0
    groups = group_pixels(labels)
    expected = skimage.segmentation.find_boundaries(labels[np.newaxis], mode="inner")[0]
    np.testing.assert_array_equal(object_edges(groups, labels), expected.ravel()[groups.index])


@pytest.mark.parametrize("dtype", [np.float32, np.uint8, np.uint16])
def test_texture_of_non_float64_images_equals_cp_measure(dtype):
    from cp_measure.core.measuretexture import get_texture as reference

    from cellcompare.features.texture import get_texture

    labels, image = _touching_objects(seed=5)
    pixels = image[0].astype(dtype) if dtype == np.float32 else \
        (image[0] * np.iinfo(dtype).max).astype(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _assert_equal_dicts(get_texture(labels, pixels, 1, 16), reference(labels, pixels, 1, 16))


def test_texture_rejects_float_images_outside_unit_range():
    from cellcompare.features.texture import get_texture

    labels, image = _touching_objects()
    with pytest.raises(ValueError, match="between -1 and 1"):
        get_texture(labels, image[0] * 2.0, 1, 256)


@pytest.mark.parametrize("shape", [(32, 32), (5, 7), (23, 40)])
def test_granularity_background_disk_filters_equal_skimage(shape):
    """Erosion and dilation by disk(10), outside pixels ignored, equal skimage's (reflect border)."""
    import skimage.morphology

    from cellcompare.features.granularity import (
        ELEMENT_SIZE,
        _disk_extreme,
        _disk_offsets,
    )

    image = np.random.default_rng(shape[0]).random(shape)
    disk = skimage.morphology.disk(ELEMENT_SIZE, dtype=bool)
    offsets = _disk_offsets(ELEMENT_SIZE)
    eroded = _disk_extreme(image, offsets, True)
    np.testing.assert_array_equal(eroded, skimage.morphology.erosion(image, footprint=disk))
    np.testing.assert_array_equal(_disk_extreme(eroded, offsets, False),
                                  skimage.morphology.dilation(eroded, footprint=disk))
    assert eroded.min() == image.min() and (eroded < image).any()
