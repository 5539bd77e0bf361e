"""Automatic thresholds the CellProfiler way: method, two or three classes, global or adaptive.

CellProfiler's IdentifyPrimaryObjects asks for a threshold *strategy* (global, or adaptive:
one threshold per window, for uneven illumination) and a *method* (Otsu, minimum
cross-entropy); Otsu may split the histogram into three classes, the middle one going to
the background or the foreground. :class:`Threshold` carries those choices and is called on an
image; it returns a scalar (global) or a per-pixel threshold image (adaptive).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage import filters

__all__ = ["METHODS", "STRATEGIES", "Threshold", "ThresholdError"]

METHODS = ("otsu", "minimum_cross_entropy")
STRATEGIES = ("global", "adaptive")
#: CellProfiler bounds an adaptive threshold to this range around the global one, so that a
#: window holding only background (or only foreground) cannot flip to segmenting its noise.
ADAPTIVE_BOUNDS = (0.7, 1.5)


class ThresholdError(ValueError):
    """An invalid threshold setting."""


@dataclass(frozen=True)
class Threshold:
    """An automatic threshold.

    Parameters
    ----------
    method : {"otsu", "minimum_cross_entropy"}
        Otsu's between-class variance, or Li's minimum cross-entropy (CellProfiler's
        default for nuclei).
    classes : {2, 3}
        Three classes (Otsu only) split the histogram twice; ``middle`` says where the middle
        class goes. Use it when dim debris or cytoplasm sits between background and nuclei.
    middle : {"background", "foreground"}
        Side of the middle class with ``classes=3``.
    strategy : {"global", "adaptive"}
        One threshold per image, or one per ``window`` x ``window`` tile, interpolated
        between tile centres and bounded to 0.7-1.5 x the global threshold.
    window : int
        Tile size in pixels of the adaptive strategy (CellProfiler's default is 50; a few
        object diameters is a good size).

    Examples
    --------
    >>> import numpy as np
    >>> from cellcompare.features.threshold import Threshold
    >>> image = np.zeros((20, 20)); image[5:10, 5:10] = 1.0; image[12:18, 12:18] = 0.4
    >>> int((image > Threshold()(image)).sum())                     # the bright square
    25
    >>> int((image > Threshold(classes=3, middle="foreground")(image)).sum())   # both squares
    61
    >>> Threshold(strategy="adaptive", window=10)(image).shape
    (20, 20)
    """

    method: str = "otsu"
    classes: int = 2
    middle: str = "background"
    strategy: str = "global"
    window: int = 50

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ThresholdError(f"threshold method must be one of {list(METHODS)}, got {self.method!r}")
        if self.classes not in (2, 3):
            raise ThresholdError(f"threshold classes must be 2 or 3, got {self.classes!r}")
        if self.classes == 3 and self.method != "otsu":
            raise ThresholdError("three-class thresholding is Otsu's (as in CellProfiler); "
                                 f"got method {self.method!r}")
        if self.middle not in ("background", "foreground"):
            raise ThresholdError(f"threshold middle must be 'background' or 'foreground', got {self.middle!r}")
        if self.strategy not in STRATEGIES:
            raise ThresholdError(f"threshold strategy must be one of {list(STRATEGIES)}, got {self.strategy!r}")
        if int(self.window) < 3:
            raise ThresholdError(f"adaptive window must be >= 3 pixels, got {self.window!r}")

    def level(self, values: np.ndarray) -> float:
        """The global threshold of a set of pixel values (``inf`` when they are all equal)."""
        values = np.asarray(values, dtype=np.float64).ravel()
        if values.size == 0 or np.ptp(values) == 0:
            return float(np.inf)
        if self.classes == 3:
            if np.unique(values).size < 3:
                return float(filters.threshold_otsu(values))
            low, high = filters.threshold_multiotsu(values, classes=3)
            return float(high if self.middle == "background" else low)
        if self.method == "minimum_cross_entropy":
            return float(filters.threshold_li(values))
        return float(filters.threshold_otsu(values))

    def __call__(self, image: np.ndarray) -> float | np.ndarray:
        """Threshold of a ``(H, W)`` image: a float, or an ``(H, W)`` array when adaptive."""
        image = np.asarray(image, dtype=np.float64)
        level = self.level(image)
        if self.strategy == "global" or not np.isfinite(level):
            return level
        return self._adaptive(image, level)

    def _adaptive(self, image: np.ndarray, level: float) -> np.ndarray:
        window = int(self.window)
        rows = max(1, round(image.shape[0] / window))
        cols = max(1, round(image.shape[1] / window))
        row_edges = np.linspace(0, image.shape[0], rows + 1).astype(int)
        col_edges = np.linspace(0, image.shape[1], cols + 1).astype(int)
        tiles = np.empty((rows, cols))
        for i in range(rows):
            for j in range(cols):
                tile = image[row_edges[i]:row_edges[i + 1], col_edges[j]:col_edges[j + 1]]
                tiles[i, j] = self.level(tile)
        low, high = ADAPTIVE_BOUNDS
        tiles = np.clip(np.where(np.isfinite(tiles), tiles, level), low * level, high * level)
        # bilinear between tile centres, held constant beyond the outer centres
        centres_r = (row_edges[:-1] + row_edges[1:] - 1) / 2
        centres_c = (col_edges[:-1] + col_edges[1:] - 1) / 2
        r = np.interp(np.arange(image.shape[0]), centres_r, np.arange(rows))
        c = np.interp(np.arange(image.shape[1]), centres_c, np.arange(cols))
        rr, cc = np.meshgrid(r, c, indexing="ij")
        return ndi.map_coordinates(tiles, [rr, cc], order=1, mode="nearest")
