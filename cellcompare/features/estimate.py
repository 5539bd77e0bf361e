"""Settings read from the images themselves: which channel holds the nuclei, how big they are.

CellProfiler asks the user for the nucleus image and the typical object diameter because the
defaults that suit one screen segment noise on another. These functions give the answer a
careful user would give by looking: the channel whose foreground stands out most from its
background, and the typical diameter of its objects. All are pure functions over arrays.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi
from skimage import filters, measure

__all__ = ["DNA_NAME", "CYTO_NAME", "channel_signal", "estimate_diameter", "nucleus_channel_by_name",
           "weak_channels"]

#: Channel names of nuclear stains (matched case-insensitively anywhere in the name).
DNA_NAME = re.compile(r"dna|dapi|hoechst|^hoe|hoe\d*$|nucle|nucblue|h2b|histone|draq|to-?pro|syto|"
                      r"^pi$|propidium", re.IGNORECASE)
#: Channel names of whole-cell stains, preferred for growing cells from nuclei.
CYTO_NAME = re.compile(r"actin|phalloidin|cyto|cell|membrane|wga|agp|tubulin", re.IGNORECASE)

#: Pixels of the smallest object that counts towards the diameter estimate.
_MIN_PIXELS = 9
#: A component whose area-equivalent diameter exceeds this multiple of its inscribed diameter,
#: or whose solidity is below this bound, is a clump (or a ragged shape); its area does not
#: tell one object's size. Two touching disks have a solidity of about 0.90, an ellipse 0.98.
_SINGLE_RATIO = 1.6
_SINGLE_SOLIDITY = 0.93


def nucleus_channel_by_name(names: Sequence[str]) -> list[str]:
    """The channel names that name a nuclear stain, in order.

    Examples
    --------
    >>> from cellcompare.features.estimate import nucleus_channel_by_name
    >>> nucleus_channel_by_name(["Cells", "OrigDNA"]), nucleus_channel_by_name(["w1", "Hoechst 33342"])
    (['OrigDNA'], ['Hoechst 33342'])
    >>> nucleus_channel_by_name(["GFP", "Actin"])
    []
    """
    return [str(n) for n in names if DNA_NAME.search(str(n))]


def _foreground(image: np.ndarray, sigma: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    smooth = ndi.gaussian_filter(np.asarray(image, dtype=np.float64), sigma)
    if np.ptp(smooth) == 0:
        return smooth, np.zeros(smooth.shape, bool)
    return smooth, smooth > filters.threshold_otsu(smooth)


def channel_signal(image: np.ndarray) -> float:
    """How far a channel's foreground stands out from its background, in background spreads.

    ``(median foreground - median background) / spread``, the foreground being above Otsu's
    threshold of the lightly smoothed image and the spread the background's MAD (floored at
    1/1000 of the foreground level, so a flat integer background does not divide by zero).
    A nuclear stain scores far above a diffuse cytoplasm stain and an empty channel scores 0.

    Parameters
    ----------
    image : np.ndarray
        ``(H, W)`` channel, any numeric dtype.

    Returns
    -------
    float
        The contrast score (0 for a flat image).

    Examples
    --------
    >>> import numpy as np
    >>> from cellcompare.features.estimate import channel_signal
    >>> rng = np.random.default_rng(0)
    >>> spots = rng.normal(10, 1, (64, 64)); spots[10:20, 10:20] += 50
    >>> diffuse = rng.normal(10, 5, (64, 64)) + np.linspace(0, 20, 64)
    >>> channel_signal(spots) > 10 * channel_signal(diffuse), channel_signal(np.zeros((8, 8)))
    (True, 0.0)
    """
    smooth, fg = _foreground(image)
    if not fg.any() or fg.all():
        return 0.0
    back = smooth[~fg]
    fore = float(np.median(smooth[fg]))
    centre = float(np.median(back))
    spread = max(1.4826 * float(np.median(np.abs(back - centre))), 1e-3 * abs(fore), 1e-12)
    return max(0.0, (fore - centre) / spread)


def weak_channels(image: np.ndarray, names: Sequence[str], *, span: float = 0.25,
                  excess: float = 0.10) -> list[str]:
    """Channels that are nearly empty next to the image's strongest channel.

    A channel is nearly empty when both its range (99.9th percentile minus median) is under
    ``span`` of the largest range and its signal (mean excess over its median: the integrated
    brightness above background) is under ``excess`` of the largest signal. A few bright specks
    therefore do not make a stain; 12-bit data in 16-bit files are not weak, because every
    channel shares the file's scale.

    Parameters
    ----------
    image : np.ndarray
        ``(C, H, W)`` image (one dtype for all channels).
    names : sequence of str
        The ``C`` channel names.
    span, excess : float
        The fractions of the strongest channel's range and signal below which a channel is
        nearly empty.

    Returns
    -------
    list of str
        Names of the nearly empty channels (empty for a single channel).

    Examples
    --------
    >>> import numpy as np
    >>> from cellcompare.features.estimate import weak_channels
    >>> rgb = np.zeros((3, 32, 32)); rgb[1, 8:24, 8:24] = 200; rgb[0, ::10, ::10] = 41
    >>> weak_channels(rgb, ["R", "G", "B"])
    ['R', 'B']
    """
    image = np.asarray(image, dtype=np.float64)
    if image.shape[0] < 2:
        return []
    flat = image.reshape(image.shape[0], -1)
    median = np.median(flat, axis=1, keepdims=True)
    ranges = np.percentile(flat, 99.9, axis=1) - median[:, 0]
    signal = np.clip(flat - median, 0, None).mean(axis=1)
    if ranges.max() <= 0:
        return list(map(str, names))
    return [str(n) for n, r, s in zip(names, ranges, signal)
            if r < span * ranges.max() and s < excess * signal.max()]


def estimate_diameter(image: np.ndarray) -> float | None:
    """Typical diameter in pixels of the bright objects of one channel.

    The foreground (Otsu's threshold of the lightly smoothed image, holes filled) falls into
    connected components. A component's inscribed diameter (twice its largest distance to the
    background) is one object's width even when objects touch; for components that are single
    objects (area-equivalent diameter at most 1.6 x the inscribed one, solidity at least 0.93)
    the area-equivalent
    diameter is the object's size, as CellProfiler's ``AreaShape_EquivalentDiameter``.
    The estimate is the area-weighted median over single objects (so that specks of noise,
    however many, weigh little), or of the inscribed diameters when no object is single.

    Parameters
    ----------
    image : np.ndarray
        ``(H, W)`` channel, any numeric dtype.

    Returns
    -------
    float or None
        The typical diameter, or ``None`` when the image has no foreground object of at least
        9 pixels.

    Examples
    --------
    >>> import numpy as np
    >>> from skimage.draw import disk
    >>> from cellcompare.features.estimate import estimate_diameter
    >>> image = np.zeros((200, 200))
    >>> for r, c in [(40, 40), (40, 120), (130, 60), (140, 150)]:
    ...     image[disk((r, c), 15)] = 1.0
    >>> round(estimate_diameter(image))
    30
    """
    _, fg = _foreground(image)
    fg = ndi.binary_fill_holes(fg)
    labels, n = ndi.label(fg)
    if n == 0:
        return None
    index = np.arange(1, n + 1)
    area = np.bincount(labels.ravel(), minlength=n + 1)[1:].astype(np.float64)
    inscribed = 2.0 * np.asarray(ndi.maximum(ndi.distance_transform_edt(fg), labels, index))
    equivalent = 2.0 * np.sqrt(area / np.pi)
    big = area >= _MIN_PIXELS
    if not big.any():
        return None
    single = big & (equivalent <= _SINGLE_RATIO * inscribed)
    for region in measure.regionprops(labels):              # touching pairs have a waist
        if single[region.label - 1] and region.solidity < _SINGLE_SOLIDITY:
            single[region.label - 1] = False
    values, weights = (equivalent[single], area[single]) if single.any() else (inscribed[big], area[big])
    order = np.argsort(values)
    cumulative = np.cumsum(weights[order])
    return float(values[order][np.searchsorted(cumulative, 0.5 * cumulative[-1])])
