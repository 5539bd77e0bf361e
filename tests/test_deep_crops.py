"""Single-cell crops: cutting, padding, masking, the memory-mapped cache and per-plate scaling."""

import numpy as np
import pytest
import torch
from skimage.draw import disk

from cellcompare.datasets import Sample
from cellcompare.deep.crop_cache import CropCache
from cellcompare.deep.crops import (
    CellCrops,
    CropError,
    auto_crop_size,
    cut_crops,
    group_scales,
    nucleus_centers,
    sample_crops,
)
from cellcompare.deep.data import resize_pad
from cellcompare.features import FeatureConfig


def _site(centres, radius=5, size=64):
    """Two-channel uint8 site: bright disks in channel 0, their index x 10 in channel 1."""
    image = np.zeros((2, size, size), np.uint8)
    for k, (y, x) in enumerate(centres, start=1):
        rr, cc = disk((y, x), radius, shape=(size, size))
        image[0, rr, cc] = 200
        image[1, rr, cc] = 10 * k
    return image


class _Dataset:
    """The slice of ``datasets.ImageDataset`` the cache reads."""

    channel_names = ("DNA", "Marker")

    def __init__(self, images):
        self.images = images
        self.ids = np.array(list(images), dtype=object)
        self.reads = 0

    def get(self, sid):
        self.reads += 1
        return Sample(id=sid, image=self.images[sid], label="a",
                      metadata={"channel_names": list(self.channel_names)})


SEGMENT = FeatureConfig(preset="minimal", dna_channel="DNA", cyto_channel="DNA", min_area=10)


def test_crop_is_centred_on_the_given_pixel():
    image = np.arange(100, dtype=np.float32).reshape(1, 10, 10)
    crop = cut_crops(image, np.array([[5.0, 4.0]]), 4)[0, 0]
    np.testing.assert_array_equal(crop, image[0, 3:7, 2:6])


def test_crops_are_zero_padded_at_borders():
    image = np.ones((2, 10, 10), np.float32)
    crop = cut_crops(image, np.array([[0.0, 9.0]]), 6)[0]
    assert crop.shape == (2, 6, 6)
    # centre (0, 9): rows -3..2 and cols 6..11 -> 3 rows and 2 columns fall outside
    assert crop[0].sum() == 3 * 4
    assert crop[:, :3].sum() == 0 and crop[:, :, 4:].sum() == 0


def test_mask_keeps_only_the_cells_own_pixels():
    image = np.ones((1, 20, 20), np.float32)
    cells = np.zeros((20, 20), np.int32)
    cells[5:15, 5:10], cells[5:15, 10:15] = 1, 2
    crop = cut_crops(image, np.array([[10.0, 7.0]]), 12, cells=cells, ids=np.array([1]))[0, 0]
    assert crop.sum() == 50  # cell 1 is 10 x 5 pixels, all inside the crop; cell 2 is masked


def test_nucleus_centres_and_diameters_of_disks():
    labels = np.zeros((60, 60), np.int32)
    for k, (y, x) in enumerate([(15, 20), (40, 44)], start=1):
        labels[disk((y, x), 8, shape=labels.shape)] = k
    ids, centres, diameters = nucleus_centers(labels)
    assert ids.tolist() == [1, 2]
    np.testing.assert_allclose(centres, [[15, 20], [40, 44]], atol=1e-9)
    np.testing.assert_allclose(diameters, 16, rtol=0.05)


@pytest.mark.parametrize("diameter, expected", [(18.0, 64), (24.0, 88), (2.0, 16)])
def test_auto_crop_size_is_a_multiple_of_the_median_diameter(diameter, expected):
    assert auto_crop_size(np.full(5, diameter)) == expected


def test_sample_crops_follow_the_features_segmentation():
    sample = Sample(id="s1", image=_site([(16, 16), (40, 44)]), metadata={"channel_names": ["DNA", "Marker"]})
    crops, cells = sample_crops(sample, SEGMENT, crop_size=16, channels=[1])
    assert crops.shape == (2, 1, 16, 16) and crops.dtype == np.float32
    assert cells.Metadata_ObjectNumber.tolist() == [1, 2]
    np.testing.assert_allclose(cells[["Metadata_Location_Center_Y", "Metadata_Location_Center_X"]],
                               [[16, 16], [40, 44]], atol=0.5)
    # channel 1 carries each disk's index: crop k sees 10 * k / 255 at its centre
    np.testing.assert_allclose(crops[:, 0, 8, 8], [10 / 255, 20 / 255], rtol=1e-6)


def test_cache_cuts_once_and_reopens(tmp_path):
    ds = _Dataset({"a": _site([(16, 16), (40, 44)]), "b": _site([(30, 30)])})
    cache = CropCache.build(tmp_path, ds, SEGMENT, crop_size=16, progress=False)
    assert cache.crops.shape == (3, 2, 16, 16) and isinstance(cache.crops, np.memmap)
    assert cache.rows(["b", "a"]).tolist() == [2, 0, 1]
    reads = ds.reads
    again = CropCache.build(tmp_path, ds, SEGMENT, crop_size=16, progress=False)
    assert ds.reads == reads and again.folder == cache.folder  # nothing read or cut again
    other = CropCache.build(tmp_path, ds, SEGMENT, crop_size=16, channels=[0], progress=False)
    assert other.folder != cache.folder and other.crops.shape[1] == 1


def test_cache_without_metadata_is_refused(tmp_path):
    with pytest.raises(CropError, match="crops.json"):
        CropCache(tmp_path)


def test_group_scales_remove_a_plate_gain():
    crops = np.concatenate([np.full((3, 2, 4, 4), 0.2), np.full((3, 2, 4, 4), 0.4)]).astype(np.float16)
    crops[:, 1] *= 2
    keys = np.array(["p1"] * 3 + ["p2"] * 3)
    view = CellCrops(crops, np.arange(6), group_scales(crops, np.arange(6), keys))
    values = np.stack([view[i][:, 0, 0] for i in range(6)])
    np.testing.assert_allclose(values, 1.0, rtol=1e-3)  # both plates, both channels at their mean
    assert view.subset([4])[0].shape == (2, 4, 4)


def test_resize_pad_keeps_the_aspect_ratio_of_a_long_object():
    embryo = torch.zeros(1, 420, 1110)
    embryo[:, 100:320, 5:1105] = 1.0  # the object spans nearly the whole long axis
    out = resize_pad(embryo, 64)
    assert out.shape == (1, 64, 64)
    columns = out[0].amax(dim=0)
    assert columns[1] > 0.5 and columns[-2] > 0.5  # both ends kept (a centre crop loses them)
    rows = out[0].amax(dim=1)
    assert rows[:16].max() == 0 and rows[-16:].max() == 0  # padding above and below


FIVE = [(10, 10), (10, 40), (30, 25), (50, 12), (50, 50)]


def test_bounded_cache_cuts_at_most_cells_per_image(tmp_path):
    """N = sum(min(cells, cells_per_image)); the file holds exactly those crops."""
    ds = _Dataset({"five": _site(FIVE, radius=4), "two": _site([(16, 16), (40, 44)]),
                   "one": _site([(30, 30)])})
    full = CropCache.build(tmp_path, ds, SEGMENT, crop_size=16, progress=False)
    assert [len(full.rows([s])) for s in ("five", "two", "one")] == [5, 2, 1]
    bounded = CropCache.build(tmp_path, ds, SEGMENT, crop_size=16, cells_per_image=3, seed=0,
                              progress=False)
    assert bounded.folder != full.folder
    assert bounded.crops.shape == (3 + 2 + 1, 2, 16, 16)
    assert (bounded.folder / "crops.npy").stat().st_size == 128 + 6 * 2 * 16 * 16 * 2  # header + float16
    assert bounded.meta["cells_per_image"] == 3 and bounded.meta["n_crops"] == 6
    # each kept crop is the full cache's crop of the same cell
    key = ["Metadata_sample_id", "Metadata_ObjectNumber"]
    where = {tuple(r): i for i, r in enumerate(full.cells[key].itertuples(index=False))}
    same = [where[tuple(r)] for r in bounded.cells[key].itertuples(index=False)]
    np.testing.assert_array_equal(np.asarray(bounded.crops), np.asarray(full.crops)[same])


def test_the_same_seed_chooses_the_same_cells(tmp_path):
    ds = _Dataset({"five": _site(FIVE, radius=4)})

    def chosen(seed, folder):
        cache = CropCache.build(tmp_path / folder, ds, SEGMENT, crop_size=16, cells_per_image=2,
                                seed=seed, progress=False)
        return cache.cells["Metadata_ObjectNumber"].tolist()

    first = chosen(0, "a")
    assert len(first) == 2 and chosen(0, "b") == first  # rebuilt elsewhere: the same cells
    assert {tuple(chosen(s, f"s{s}")) for s in range(1, 8)} != {tuple(first)}  # the seed matters


def test_a_served_image_bounds_to_the_cells_of_the_cache(tmp_path):
    """Serve cuts every crop of an image, then ``CellInputs.bounded`` keeps the cache's cells."""
    from cellcompare.deep.cells import CellInputs

    ds = _Dataset({"five": _site(FIVE, radius=4), "two": _site([(16, 16), (40, 44)])})
    cache = CropCache.build(tmp_path, ds, SEGMENT, crop_size=16, cells_per_image=3, seed=4,
                            progress=False)
    # as serve does: samples renamed by position, crops rounded to float16 and joined
    served = CellInputs.from_samples([Sample(id=str(k), image=ds.images[s], metadata=ds.get(s).metadata)
                                      for k, s in enumerate(("five", "two"))], SEGMENT, crop_size=16)
    kept = served.bounded(3, seed=4)
    assert len(served) == 7 and len(kept) == 5
    assert kept.objects["Metadata_ObjectNumber"].tolist() == cache.cells["Metadata_ObjectNumber"].tolist()
    np.testing.assert_array_equal(np.asarray(kept.crops[kept.rows]), np.asarray(cache.crops))
