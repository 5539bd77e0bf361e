"""Segmentation of nuclei, cells and whole objects: pure functions over arrays.

Modelled on CellProfiler's IdentifyPrimaryObjects (smoothing, global automatic threshold,
declumping, size and border filters) and IdentifySecondaryObjects "Propagation". Propagation
is approximated by a marker watershed seeded with the nuclei on a blend of the smoothed
cytoplasm intensity and its gradient (``regularization`` weights the intensity term, as
lambda does in CellProfiler), limited to pixels above the cytoplasm threshold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage import filters, measure, segmentation
from skimage.feature import peak_local_max

from .threshold import METHODS, Threshold

class SegmentationError(ValueError):
    """Invalid segmentation input or parameter."""


def _check_2d(image: np.ndarray, name: str) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 2:
        raise SegmentationError(f"{name} must be a 2-D (H, W) array, found shape {image.shape}")
    return image.astype(np.float64, copy=False)


def _threshold(threshold: str | Threshold) -> Threshold:
    if isinstance(threshold, Threshold):
        return threshold
    if threshold not in METHODS:
        raise SegmentationError(f"threshold method must be one of {list(METHODS)}, got {threshold!r}")
    return Threshold(method=threshold)


def _declump(mask: np.ndarray, image: np.ndarray, how: str, min_distance: int, sigma: float) -> np.ndarray:
    if how == "none":
        return measure.label(mask)
    if how not in ("distance", "intensity"):
        raise SegmentationError(f"declump must be 'distance', 'intensity' or 'none', got {how!r}")
    distance = ndi.distance_transform_edt(mask)
    if how == "distance":
        surface = ndi.gaussian_filter(distance, 1.0)
    else:
        # a saturated nucleus is a plateau: a slight slope towards its centre keeps it one peak
        surface = ndi.gaussian_filter(image, sigma)
        span = float(np.ptp(surface[mask])) if mask.any() else 0.0
        surface = surface + 0.01 * (span or 1.0) * distance / max(float(distance.max()), 1.0)
    coarse = measure.label(mask)
    peaks = peak_local_max(surface, min_distance=min_distance, labels=coarse, exclude_border=False)
    markers = np.zeros(mask.shape, dtype=np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    # objects without any peak keep one marker so none is lost
    missing = np.setdiff1d(np.unique(coarse[mask]), np.unique(coarse[markers > 0]))
    for lab in missing:
        r, c = np.argwhere(coarse == lab)[0]
        markers[r, c] = markers.max() + 1
    return segmentation.watershed(-surface, markers, mask=mask)


@dataclass(frozen=True)
class SizeSettings:
    """The size-dependent settings of nucleus segmentation, from a diameter range.

    As CellProfiler's IdentifyPrimaryObjects derives them from the typical diameter
    ``(min, max)``: objects whose area is outside the range's disks are discarded, the
    thresholded image is smoothed in proportion to the smallest object, and declumping seeds
    stand at least a minimal radius apart on the intensity smoothed at 1/3.5 of the smallest
    diameter (CellProfiler's automatic declumping filter size).

    Examples
    --------
    >>> from cellcompare.features.segmentation import SizeSettings
    >>> s = SizeSettings.from_diameter((10, 40))
    >>> round(s.min_area), round(s.max_area), s.smoothing_sigma, s.min_distance, round(s.declump_sigma, 2)
    (79, 1257, 1.25, 5, 2.86)
    """

    min_area: float
    max_area: float | None
    smoothing_sigma: float
    min_distance: int
    declump_sigma: float

    @classmethod
    def from_diameter(cls, diameter: tuple[float, float]) -> "SizeSettings":
        """Settings for objects ``diameter = (min, max)`` pixels across."""
        low, high = _check_diameter(diameter)
        return cls(min_area=np.pi * (low / 2) ** 2, max_area=np.pi * (high / 2) ** 2,
                   smoothing_sigma=max(0.5, low / 8), min_distance=max(2, int(low / 2)),
                   declump_sigma=low / 3.5)

    @classmethod
    def from_area(cls, min_area: float, max_area: float | None, smoothing_sigma: float) -> "SizeSettings":
        """The settings given as areas (seeds ``sqrt(min_area / pi)`` apart)."""
        return cls(min_area=min_area, max_area=max_area, smoothing_sigma=smoothing_sigma,
                   min_distance=max(2, int(np.sqrt(min_area / np.pi))), declump_sigma=smoothing_sigma)


def _check_diameter(diameter: Sequence[float]) -> tuple[float, float]:
    values = tuple(float(v) for v in diameter)
    if len(values) != 2 or not 0 < values[0] <= values[1]:
        raise SegmentationError(f"diameter must be [min, max] pixels with 0 < min <= max, got {list(diameter)}")
    return values


def diameter_range(typical: float) -> tuple[float, float]:
    """The ``(min, max)`` diameter range around a typical diameter: half to twice it.

    CellProfiler's examples set ranges of this width around their nuclei (ExampleFly 10-40 for
    nuclei about 19 px across).

    >>> from cellcompare.features.segmentation import diameter_range
    >>> diameter_range(19.0)
    (9.5, 38.0)
    """
    return (round(typical / 2, 1), round(typical * 2, 1))


@dataclass(frozen=True)
class Nuclei:
    """Nuclei found in one image, with what was discarded on the way.

    ``labels`` is the ``(H, W)`` int32 label image (``1..n``); ``found`` counts the objects
    before the size and border filters, ``small``, ``large`` and ``border`` those each filter
    discarded (an object both large and on the border counts as large); ``foreground`` is the
    thresholded fraction of the image.
    """

    labels: np.ndarray
    found: int
    small: int
    large: int
    border: int
    foreground: float
    diameter: tuple[float, float] | None

    @property
    def count(self) -> int:
        """Objects kept."""
        return self.found - self.small - self.large - self.border


def _filter_sizes(labels: np.ndarray, min_area: float, max_area: float | None,
                  exclude_border: bool) -> tuple[np.ndarray, int, int, int]:
    areas = np.bincount(labels.ravel())
    present = areas > 0
    present[0] = False
    small = present & (areas < min_area)
    large = present & ~small & (areas > max_area) if max_area is not None else np.zeros_like(small)
    edge = np.zeros_like(small)
    if exclude_border:
        edge[np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))] = True
        edge &= present & ~small & ~large
    bad = small | large | edge
    labels = labels.copy()
    labels[bad[labels]] = 0
    return (segmentation.relabel_sequential(labels)[0].astype(np.int32),
            int(small.sum()), int(large.sum()), int(edge.sum()))


def identify_nuclei(dna: np.ndarray, *, diameter: Sequence[float] | None = None,
                    threshold: str | Threshold = "otsu", smoothing_sigma: float | None = None,
                    min_area: float | None = None, max_area: float | None = None,
                    declump: str = "distance", exclude_border: bool = False,
                    min_distance: int | None = None) -> Nuclei:
    """Segment nuclei from a DNA image and count what the filters discarded.

    Parameters
    ----------
    dna : np.ndarray
        ``(H, W)`` DNA channel, any numeric dtype.
    diameter : (float, float), optional
        Typical diameter range ``(min, max)`` in pixels, as CellProfiler asks for it. It sets
        the smoothing, the declumping seeds' spacing and the size filter
        (:class:`SizeSettings`). Unset, and without ``min_area``, it is estimated from this
        image (:func:`features.estimate.estimate_diameter`, then half to twice that).
    threshold : str or Threshold
        ``"otsu"``, ``"minimum_cross_entropy"``, or a :class:`features.threshold.Threshold`
        (three classes, adaptive).
    smoothing_sigma : float, optional
        Gaussian sigma applied before thresholding (overrides the diameter's).
    min_area, max_area : float, optional
        Objects outside ``[min_area, max_area]`` pixels are discarded (override the
        diameter's; ``min_area`` without a diameter keeps the old fixed-size behaviour with a
        smoothing sigma of 1).
    declump : {"distance", "intensity", "none"}
        Watershed on the distance transform or on the smoothed intensity.
    exclude_border : bool
        Discard objects touching the image border.
    min_distance : int, optional
        Minimal distance between declumping seeds (overrides the diameter's).

    Returns
    -------
    Nuclei
        The label image and the counts of found and discarded objects.

    Examples
    --------
    >>> import numpy as np
    >>> from skimage.draw import disk
    >>> from cellcompare.features.segmentation import identify_nuclei
    >>> image = np.zeros((120, 120))
    >>> for r, c in [(30, 30), (30, 90), (90, 60)]:
    ...     image[disk((r, c), 10)] = 1.0
    >>> image[100:105, 5:10] = 1.0                         # a speck, far below 12 px across
    >>> found = identify_nuclei(image, diameter=(12, 40))
    >>> found.count, found.small, int(found.labels.max())
    (3, 1, 3)
    """
    from .estimate import estimate_diameter

    image = _check_2d(dna, "dna")
    rule = _threshold(threshold)
    if diameter is None and min_area is None:
        typical = estimate_diameter(image)
        diameter = diameter_range(typical) if typical else None
    if diameter is not None:
        size = SizeSettings.from_diameter(diameter)
        diameter = _check_diameter(diameter)
    else:
        size = SizeSettings.from_area(30 if min_area is None else min_area, max_area, 1.0)
    sigma = size.smoothing_sigma if smoothing_sigma is None else smoothing_sigma
    low = size.min_area if min_area is None else min_area
    high = size.max_area if max_area is None else max_area
    smooth = ndi.gaussian_filter(image, sigma) if sigma > 0 else image
    mask = ndi.binary_fill_holes(smooth > rule(smooth))
    seeds = size.min_distance if min_distance is None else min_distance
    labels = _declump(mask, image, declump, int(seeds), size.declump_sigma if smoothing_sigma is None
                      else smoothing_sigma)
    found = int(len(np.unique(labels))) - int((labels == 0).any())
    labels, small, large, border = _filter_sizes(labels, low, high, exclude_border)
    return Nuclei(labels, found, small, large, border, float(mask.mean()), diameter)


def segment_nuclei(dna: np.ndarray, **settings) -> np.ndarray:
    """Segment nuclei from a DNA image: the label image of :func:`identify_nuclei`.

    Parameters
    ----------
    dna : np.ndarray
        ``(H, W)`` DNA channel, any numeric dtype.
    **settings
        Keyword settings of :func:`identify_nuclei` (``diameter``, ``threshold``,
        ``min_area`` ...).

    Returns
    -------
    np.ndarray
        ``(H, W)`` int32 label image, labels ``1..n`` consecutive.
    """
    return identify_nuclei(dna, **settings).labels


def segment_cells(cyto: np.ndarray, nuclei: np.ndarray, *, method: str = "propagation",
                  threshold_method: str = "otsu", threshold_scale: float = 1.0,
                  smoothing_sigma: float = 1.0, regularization: float = 0.05) -> np.ndarray:
    """Grow cells from nuclei over a cytoplasm image (IdentifySecondaryObjects-like).

    Parameters
    ----------
    cyto : np.ndarray
        ``(H, W)`` cytoplasm channel.
    nuclei : np.ndarray
        ``(H, W)`` nucleus label image; cell ``i`` grows from nucleus ``i``.
    method : {"propagation", "watershed_gradient"}
        ``propagation`` floods a blend of gradient and inverted intensity; the other floods
        the gradient only.
    threshold_method : str
        Threshold of the cytoplasm image (see :func:`segment_nuclei`).
    threshold_scale : float
        Multiplies the automatic threshold (low values give generous cells).
    smoothing_sigma : float
        Gaussian sigma before thresholding.
    regularization : float
        Weight of the intensity term relative to the gradient.

    Returns
    -------
    np.ndarray
        ``(H, W)`` int32 labels with the nucleus numbering; each cell contains its nucleus.
    """
    image = _check_2d(cyto, "cyto")
    nuclei = np.asarray(nuclei)
    if nuclei.shape != image.shape:
        raise SegmentationError(f"nuclei shape {nuclei.shape} differs from cyto shape {image.shape}")
    if method not in ("propagation", "watershed_gradient"):
        raise SegmentationError(f"method must be 'propagation' or 'watershed_gradient', got {method!r}")
    smooth = ndi.gaussian_filter(image, smoothing_sigma) if smoothing_sigma > 0 else image
    thr = _threshold(threshold_method)(smooth)
    mask = (smooth > thr * threshold_scale) | (nuclei > 0)
    gradient = filters.sobel(smooth)
    surface = gradient
    if method == "propagation":
        span = np.ptp(smooth) or 1.0
        surface = gradient / (np.ptp(gradient) or 1.0) + regularization * (smooth.max() - smooth) / span
    cells = segmentation.watershed(surface, nuclei.astype(np.int32), mask=mask)
    cells[nuclei > 0] = nuclei[nuclei > 0]
    return cells.astype(np.int32)


def cytoplasm(cells: np.ndarray, nuclei: np.ndarray) -> np.ndarray:
    """Cells minus nuclei, keeping the cell numbering (``(H, W)`` int32)."""
    out = np.asarray(cells).astype(np.int32, copy=True)
    out[np.asarray(nuclei) > 0] = 0
    return out


def segment_whole_object(image: np.ndarray, *, method: str = "otsu",
                         smoothing_sigma: float = 2.0) -> np.ndarray:
    """Label the largest foreground component (holes filled) as object 1.

    Parameters
    ----------
    image : np.ndarray
        ``(H, W)`` image (e.g. a channel mean) of one object on a background.
    method : str
        Threshold method (see :func:`segment_nuclei`).
    smoothing_sigma : float
        Gaussian sigma before thresholding.

    Returns
    -------
    np.ndarray
        ``(H, W)`` int32 labels, 0/1 (all zero when there is no foreground).
    """
    img = _check_2d(image, "image")
    smooth = ndi.gaussian_filter(img, smoothing_sigma) if smoothing_sigma > 0 else img
    labels = measure.label(smooth > _threshold(method)(smooth))
    if labels.max() == 0:
        return np.zeros(img.shape, np.int32)
    largest = np.argmax(np.bincount(labels.ravel())[1:]) + 1
    return ndi.binary_fill_holes(labels == largest).astype(np.int32)
