"""Thresholds beyond global Otsu, each on an image built to need it."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.draw import disk

from cellcompare.features.segmentation import identify_nuclei
from cellcompare.features.threshold import Threshold, ThresholdError

CENTRES = [(r, c) for r in range(24, 200, 48) for c in range(24, 200, 48)]   # 16 nuclei


def _nuclei(brightness) -> np.ndarray:
    image = np.full((200, 200), 0.02)
    for (r, c), b in zip(CENTRES, brightness):
        image[disk((r, c), 9)] = b
    return image


def test_adaptive_threshold_finds_nuclei_under_uneven_illumination():
    """Illumination falling 10x across the field: one global threshold loses the dim side."""
    light = np.linspace(1.0, 0.1, 200)[None, :]
    image = _nuclei([1.0] * 16) * light + np.random.default_rng(0).normal(0, 0.003, (200, 200))
    found_global = identify_nuclei(image, diameter=(9, 36), threshold=Threshold("otsu"))
    found_adaptive = identify_nuclei(image, diameter=(9, 36),
                                     threshold=Threshold("otsu", strategy="adaptive", window=50))
    assert found_global.count < 14
    assert found_adaptive.count == 16


def test_three_class_otsu_puts_the_cytoplasm_haze_in_the_background():
    """Each nucleus sits in a wide haze of cytoplasm: two classes take the haze as the object."""
    image = np.full((200, 200), 0.02)
    for r, c in CENTRES:
        image[disk((r, c), 18)] = 0.5
        image[disk((r, c), 9)] = 1.0
    two = identify_nuclei(image, diameter=(9, 24), threshold=Threshold("otsu"))
    three = identify_nuclei(image, diameter=(9, 24), threshold=Threshold("otsu", classes=3))
    assert (two.count, two.large) == (0, 16)
    assert three.count == 16 and three.large == 0


def test_minimum_cross_entropy_keeps_dim_nuclei_that_otsu_drops():
    """A few very bright nuclei among dim ones pull Otsu's threshold above the dim ones."""
    image = _nuclei([1.0, 1.0] + [0.12] * 14)
    otsu = identify_nuclei(image, diameter=(9, 36), threshold=Threshold("otsu"))
    mce = identify_nuclei(image, diameter=(9, 36), threshold=Threshold("minimum_cross_entropy"))
    assert otsu.count == 2 and mce.count == 16


@pytest.mark.parametrize("settings, message", [
    ({"method": "magic"}, "threshold method"),
    ({"method": "minimum_cross_entropy", "classes": 3}, "three-class"),
    ({"strategy": "local"}, "strategy"),
    ({"classes": 4}, "classes"),
    ({"window": 1}, "window"),
])
def test_invalid_threshold_settings_are_named(settings, message):
    with pytest.raises(ThresholdError, match=message):
        Threshold(**settings)


def test_a_flat_image_has_no_foreground():
    assert Threshold()(np.ones((8, 8))) == np.inf
    assert identify_nuclei(np.ones((32, 32)), diameter=(4, 16)).count == 0
