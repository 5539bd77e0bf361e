"""Settings read from the images: the nucleus channel, the diameter, nearly empty channels."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from skimage.draw import disk, ellipse

from cellcompare.datasets import open_dataset
from cellcompare.features import FeatureConfig
from cellcompare.features.estimate import channel_signal, estimate_diameter, weak_channels
from cellcompare.features.plan import plan_dataset, resolve_segmentation
from cellcompare.features.segmentation import identify_nuclei


def _nuclei_image(radius: float, n: int = 12, size: int = 256, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    image = rng.normal(0.05, 0.01, (size, size))
    step = int(3 * radius + 4)
    centres = [(r, c) for r in range(int(radius) + 2, size - int(radius) - 2, step)
               for c in range(int(radius) + 2, size - int(radius) - 2, step)][:n]
    for r, c in centres:
        image[disk((r, c), radius, shape=image.shape)] = rng.uniform(0.6, 1.0)
    return image


@pytest.mark.parametrize("radius", [4, 8, 15, 40])
def test_the_diameter_of_disks_is_estimated_within_ten_percent(radius):
    estimate = estimate_diameter(_nuclei_image(radius, size=max(256, 14 * radius)))
    assert estimate == pytest.approx(2 * radius, rel=0.10)


def test_touching_nuclei_do_not_inflate_the_estimate():
    """Pairs and triplets of touching disks are clumps: their width, not their area, is the size."""
    image = np.zeros((240, 240))
    for k, (r, c) in enumerate([(30, 30), (30, 150), (110, 30), (110, 150), (190, 30), (190, 150)]):
        for j in range(2 + k % 2):                           # 2 or 3 disks in a row, touching
            image[disk((r, c + 19 * j), 10, shape=image.shape)] = 1.0
    assert estimate_diameter(image) == pytest.approx(20, rel=0.15)


def test_specks_of_noise_weigh_little_against_nuclei():
    image = _nuclei_image(10, n=9)
    rng = np.random.default_rng(1)
    for r, c in rng.integers(0, 256, (200, 2)):        # 200 one-to-four-pixel specks
        image[r:r + 2, c:c + 2] = 0.9
    assert estimate_diameter(image) == pytest.approx(20, rel=0.15)


def test_elongated_nuclei_give_their_equivalent_diameter():
    image = np.zeros((200, 200))
    for r in (40, 100, 160):
        for c in (40, 100, 160):
            image[ellipse(r, c, 8, 14)] = 1.0                 # area = pi * 8 * 14
    assert estimate_diameter(image) == pytest.approx(2 * np.sqrt(8 * 14), rel=0.08)


def test_no_object_gives_no_estimate():
    assert estimate_diameter(np.zeros((32, 32))) is None


def test_the_diameter_range_sets_the_size_filter_and_counts_what_it_discards():
    image = _nuclei_image(10, n=6)
    image[200:204, 10:14] = 1.0                               # debris, 4 px across
    image[150:250, 150:250] = 0.9                             # a blob 100 px across
    found = identify_nuclei(image, diameter=(10, 40))
    assert (found.count, found.small, found.large) == (6, 1, 1)
    assert found.found == 8


def test_the_nucleus_channel_is_the_one_that_stands_out():
    nuclei = _nuclei_image(8)
    haze = np.random.default_rng(2).normal(0.3, 0.08, nuclei.shape) + np.linspace(0, 0.3, 256)
    resolved, record = resolve_segmentation([np.stack([haze, nuclei])], ("A", "B"), FeatureConfig())
    assert resolved.dna_channel == "B" and record["dna_channel"]["chosen_by"] == "signal"
    assert record["channel_signal"]["B"] > 5 * record["channel_signal"]["A"]
    assert resolved.cyto_channel == "A"
    assert resolved.diameter == pytest.approx((8.0, 32.0), rel=0.1)
    assert record["diameter"]["chosen_by"] == "estimated"


def test_a_name_wins_over_signal_and_over_channel_order(tmp_path):
    """channelsets sort ``_Cells`` before ``_DNA``: the name still picks DNA."""
    from PIL import Image

    nuclei = (_nuclei_image(8, size=96) * 200).astype(np.uint8)
    cells = (np.clip(_nuclei_image(20, n=2, size=96), 0, 1) * 250).astype(np.uint8)  # brighter
    for site in ("s1", "s2"):
        Image.fromarray(cells).save(tmp_path / f"{site}_Cells.tif")
        Image.fromarray(nuclei).save(tmp_path / f"{site}_DNA.tif")
    ds = open_dataset(tmp_path)
    assert ds.channel_names == ("Cells", "DNA")
    resolved, record = plan_dataset(ds, FeatureConfig())
    assert (resolved.dna_channel, resolved.cyto_channel) == ("DNA", "Cells")
    assert record["dna_channel"]["chosen_by"] == "name"


def test_configured_channels_and_diameter_are_kept():
    image = np.stack([_nuclei_image(8), _nuclei_image(8, seed=3)])
    config = FeatureConfig(dna_channel="A", cyto_channel="B", diameter=(5, 20))
    resolved, record = resolve_segmentation([image], ("A", "B"), config)
    assert resolved == config
    assert record["dna_channel"]["chosen_by"] == "config" and record["diameter"]["chosen_by"] == "config"


def test_a_nearly_empty_configured_channel_is_named_in_a_warning(caplog):
    """The issue's case: channel 1 of an RGB TIFF holds max 41 of 255, the stain is in another."""
    stain = _nuclei_image(8) * 255
    empty = np.zeros_like(stain)
    empty[np.random.default_rng(0).random(stain.shape) < 0.01] = 41
    rgb = np.stack([empty, stain, empty * 0]) / 255
    with caplog.at_level(logging.WARNING, logger="cellcompare.features.plan"):
        _, record = resolve_segmentation([rgb, rgb], ("R", "G", "B"), FeatureConfig(dna_channel="R"))
    assert any("nucleus channel 'R' is nearly empty" in w for w in record["warnings"])
    assert any("sits in one channel ('G') of 3" in w for w in record["warnings"])
    assert "nearly empty" in caplog.text
    chosen, record = resolve_segmentation([rgb, rgb], ("R", "G", "B"), FeatureConfig())
    assert chosen.dna_channel == "G"


def test_twelve_bit_data_in_sixteen_bit_files_are_not_weak():
    """Every channel shares the file's scale: a 12-bit range is full signal, not an empty channel."""
    a = (_nuclei_image(8) * 4095 / 65535)
    b = (_nuclei_image(12, seed=4) * 2000 / 65535)
    assert weak_channels(np.stack([a, b]), ["hoe", "h2ax"]) == []
    assert channel_signal(a) > 10
