"""Segmentation of nuclei, cells and whole objects: pure functions over arrays.

Modelled on CellProfiler's IdentifyPrimaryObjects (smoothing, global automatic threshold,
declumping, size and border filters) and IdentifySecondaryObjects "Propagation". Propagation
is approximated by a marker watershed seeded with the nuclei on a blend of the smoothed
cytoplasm intensity and its gradient (``regularization`` weights the intensity term, as
lambda does in CellProfiler), limited to pixels above the cytoplasm threshold.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage import filters, measure, segmentation
from skimage.feature import peak_local_max

THRESHOLDS = {"otsu": filters.threshold_otsu, "minimum_cross_entropy": filters.threshold_li}


class SegmentationError(ValueError):
    """Invalid segmentation input or parameter."""


def _check_2d(image: np.ndarray, name: str) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 2:
        raise SegmentationError(f"{name} must be a 2-D (H, W) array, found shape {image.shape}")
    return image.astype(np.float64, copy=False)


def _threshold(image: np.ndarray, method: str) -> float:
    if method not in THRESHOLDS:
        raise SegmentationError(f"threshold method must be one of {sorted(THRESHOLDS)}, got {method!r}")
    if np.ptp(image) == 0:
        return float(np.inf)
    return float(THRESHOLDS[method](image))


def _declump(mask: np.ndarray, smooth: np.ndarray, how: str, min_distance: int) -> np.ndarray:
    if how == "none":
        return measure.label(mask)
    if how not in ("distance", "intensity"):
        raise SegmentationError(f"declump must be 'distance', 'intensity' or 'none', got {how!r}")
    distance = ndi.distance_transform_edt(mask)
    surface = ndi.gaussian_filter(distance, 1.0) if how == "distance" else smooth
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


def _filter_sizes(labels: np.ndarray, min_area: int, max_area: int | None,
                  exclude_border: bool) -> np.ndarray:
    areas = np.bincount(labels.ravel())
    bad = areas < min_area
    if max_area is not None:
        bad |= areas > max_area
    if exclude_border:
        edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
        bad[edge] = True
    bad[0] = False
    labels = labels.copy()
    labels[bad[labels]] = 0
    return segmentation.relabel_sequential(labels)[0].astype(np.int32)


def segment_nuclei(dna: np.ndarray, *, method: str = "otsu", smoothing_sigma: float = 1.0,
                   min_area: int = 30, max_area: int | None = None, declump: str = "distance",
                   exclude_border: bool = False, min_distance: int | None = None) -> np.ndarray:
    """Segment nuclei from a DNA image.

    Parameters
    ----------
    dna : np.ndarray
        ``(H, W)`` DNA channel, any numeric dtype.
    method : {"otsu", "minimum_cross_entropy"}
        Global threshold (minimum cross-entropy is Li's method, as CellProfiler's).
    smoothing_sigma : float
        Gaussian sigma applied before thresholding.
    min_area, max_area : int
        Objects outside ``[min_area, max_area]`` pixels are dropped.
    declump : {"distance", "intensity", "none"}
        Watershed on the distance transform or on the smoothed intensity.
    exclude_border : bool
        Drop objects touching the image border.
    min_distance : int, optional
        Minimal distance between declumping seeds; default ``sqrt(min_area / pi)``.

    Returns
    -------
    np.ndarray
        ``(H, W)`` int32 label image, labels ``1..n`` consecutive.
    """
    image = _check_2d(dna, "dna")
    smooth = ndi.gaussian_filter(image, smoothing_sigma) if smoothing_sigma > 0 else image
    mask = smooth > _threshold(smooth, method)
    mask = ndi.binary_fill_holes(mask)
    if min_distance is None:
        min_distance = max(2, int(np.sqrt(min_area / np.pi)))
    labels = _declump(mask, smooth, declump, min_distance)
    return _filter_sizes(labels, min_area, max_area, exclude_border)


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
    thr = _threshold(smooth, threshold_method)
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
    labels = measure.label(smooth > _threshold(smooth, method))
    if labels.max() == 0:
        return np.zeros(img.shape, np.int32)
    largest = np.argmax(np.bincount(labels.ravel())[1:]) + 1
    return ndi.binary_fill_holes(labels == largest).astype(np.int32)
