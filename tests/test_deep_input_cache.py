"""The decoded input cache: built once, reused, rebuilt when damaged, and equal to decoding."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from cellcompare.datasets import Sample, open_dataset
from cellcompare.datasets.synth import make_cellpainting
from cellcompare.deep import DeepClassifier, DeepConfig, ImageInputError, SampleImages
from cellcompare.deep.augment import build_augmentation
from cellcompare.deep.config import AugmentConfig
from cellcompare.deep.data import ImageTensorDataset, channel_stats
from cellcompare.deep.input_cache import InputCache, InputSettings


class _Dataset:
    """In-memory sites of 3 channels, 40 x 56 (not square: resizing pads), counting reads."""

    def __init__(self, n=8, seed=0):
        rng = np.random.default_rng(seed)
        self.images = {f"s{i}": rng.integers(0, 256, (3, 40, 56), dtype=np.uint8) for i in range(n)}
        for i, image in enumerate(self.images.values()):
            image[i % 3] //= 4  # a class signal: one darker channel
        self.ids = list(self.images)
        self.labels = [f"c{i % 2}" for i in range(n)]
        self.reads = 0

    def get(self, sid):
        self.reads += 1
        return Sample(id=sid, image=self.images[sid])


SMALL = InputSettings(image_size=16, resize="pad", channels=(2, 0), dtype="float32")
TINY = dict(arch="smallcnn", weights="none", image_size=16, epochs=2, batch_size=4, val_fraction=0.0,
            device="cpu", amp=False, progress=False, seed=3)


def test_build_then_reuse_reads_each_site_once(tmp_path, caplog):
    ds = _Dataset()
    cache = InputCache.build(tmp_path, ds, SMALL, progress=False)
    assert ds.reads == 8 and cache.inputs.shape == (8, 2, 16, 16) and cache.inputs.dtype == np.float32
    assert isinstance(cache.inputs, np.memmap) and cache.folder == tmp_path / SMALL.key()
    assert cache.nbytes == sum(p.stat().st_size for p in cache.folder.iterdir())
    stamp = (cache.folder / "inputs.npy").stat().st_mtime_ns
    with caplog.at_level(logging.INFO, logger="cellcompare.deep.input_cache"):
        again = InputCache.build(tmp_path, ds, SMALL, sample_ids=["s3", "s1"], progress=False)
    assert ds.reads == 8 and "reusing 8 decoded sites" in caplog.text  # a subset reuses it too
    assert (again.folder / "inputs.npy").stat().st_mtime_ns == stamp
    np.testing.assert_array_equal(again.images(["s3"])[0], cache.inputs[3])


def test_each_setting_has_its_own_cache(tmp_path):
    ds = _Dataset()
    folders = {InputCache.build(tmp_path, ds, s, progress=False).folder
               for s in (SMALL, SMALL.replace_size(8), InputSettings(16, "crop", (2, 0), "float32"),
                         InputSettings(16, "pad", (2, 0), "float16"), InputSettings(16, "pad", None, "float32"))}
    assert len(folders) == 5 and ds.reads == 40


def test_other_images_build_it_again(tmp_path):
    ds = _Dataset()
    InputCache.build(tmp_path, ds, SMALL, sample_ids=ds.ids[:4], progress=False)
    cache = InputCache.build(tmp_path, ds, SMALL, progress=False)
    assert ds.reads == 12 and cache.sample_ids == ds.ids


@pytest.mark.parametrize("damage", ["truncate", "no_meta", "wrong_header"])
def test_a_damaged_cache_is_rebuilt_naming_the_file(tmp_path, caplog, damage):
    ds = _Dataset()
    cache = InputCache.build(tmp_path, ds, SMALL, progress=False)
    good = np.array(cache.inputs)
    path = cache.folder / "inputs.npy"
    del cache
    if damage == "truncate":  # a bad copy: the file cut short
        with open(path, "r+b") as fh:
            fh.truncate(1000)
    elif damage == "no_meta":  # killed before inputs.json: a half-written cache is never trusted
        (path.parent / "inputs.json").unlink()
    else:  # same size, another shape in the header
        np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(16, 2, 8, 16))
    with caplog.at_level(logging.WARNING, logger="cellcompare.deep.input_cache"):
        rebuilt = InputCache.build(tmp_path, ds, SMALL, progress=False)
    assert ds.reads == 16
    if damage != "no_meta":
        assert f"input cache {path.parent} is damaged" in caplog.text and str(path) in caplog.text
    np.testing.assert_array_equal(rebuilt.inputs, good)


def test_an_unreadable_site_names_its_file(tmp_path):
    data = make_cellpainting(tmp_path / "data", classes=2, per_class=2, size=32, plates=1, seed=0)
    ds = open_dataset(data, layout="rxrx1")
    bad = ds.paths_of(1)[2]
    with open(bad, "r+b") as fh:  # the header survives, the pixels do not
        fh.truncate(60)
    with pytest.raises(ImageInputError, match=f"cannot cache sample '{ds.ids[1]}'.*{bad}"):
        InputCache.build(tmp_path / "inputs", ds, InputSettings(16), progress=False)
    assert not list((tmp_path / "inputs").glob("*/inputs.json"))


def test_a_changed_site_file_builds_it_again(tmp_path):
    data = make_cellpainting(tmp_path / "data", classes=2, per_class=2, size=32, plates=1, seed=0)
    ds = open_dataset(data, layout="rxrx1")
    first = InputCache.build(tmp_path / "inputs", ds, InputSettings(16), progress=False)
    path = ds.paths_of(0)[0]
    stat = path and __import__("os").stat(path)
    __import__("os").utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    again = InputCache.build(tmp_path / "inputs", open_dataset(data, layout="rxrx1"), InputSettings(16),
                             progress=False)
    assert again.meta["sources"][0] != first.meta["sources"][0]


def test_cached_tensors_equal_the_decoded_ones_with_augmentation(tmp_path):
    """float32 storage: the training Dataset gives bit-identical tensors at the same seed."""
    ds = _Dataset()
    decoded = SampleImages(ds, channels=[2, 0])
    cached = InputCache.build(tmp_path, ds, SMALL, progress=False).images(ds.ids)
    mean, std = channel_stats(decoded)
    assert [a.tobytes() for a in channel_stats(cached)] == [mean.tobytes(), std.tobytes()]
    augment = build_augmentation(AugmentConfig(angle_step=45.0, mask_background_p=0.5))
    views = []
    for images in (decoded, cached):
        torch.manual_seed(0)
        data = ImageTensorDataset(images, np.zeros(8, int), mean=mean, std=std, image_size=16,
                                  transform=augment)
        views.append(torch.stack([data[i][0] for i in range(8)]))
    assert torch.equal(views[0], views[1])


@pytest.mark.parametrize("dtype, atol", [("float32", 0.0), ("float16", 0.05)])
def test_predictions_from_the_cache_equal_decoding(tmp_path, dtype, atol):
    """float32: the same probabilities bit for bit. float16 rounds inputs by <= 2.4e-4, which two
    epochs at lr 0.01 amplify to 0.026 in probability here (measured), with the same classes."""
    ds = _Dataset(n=12)
    cache = InputCache.build(tmp_path, ds, InputSettings(16, "pad", (2, 0), dtype), progress=False)
    stored = np.asarray(cache.inputs, dtype=np.float32)
    reference = np.asarray(InputCache.build(tmp_path, ds, SMALL, progress=False).inputs)
    assert np.abs(stored - reference).max() <= (0 if dtype == "float32" else 2.45e-4)
    probas = []
    for images in (SampleImages(ds, channels=[2, 0]), cache.images(ds.ids)):
        clf = DeepClassifier(DeepConfig(**TINY)).fit(images, ds.labels)
        probas.append(clf.predict_proba(images))
    np.testing.assert_allclose(probas[1], probas[0], rtol=0, atol=atol)
    assert (probas[1].argmax(1) == probas[0].argmax(1)).all()
    if dtype == "float32":
        assert probas[1].tobytes() == probas[0].tobytes()
