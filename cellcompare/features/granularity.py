"""Granularity with the opening series computed once per channel, not once per object type.

cp_measure's ``get_granularity`` takes (labels, pixels) and recomputes the whole granular
spectrum (subsample, background top-hat, 16 erosion + reconstruction steps) for every object
type, although only the final per-object means depend on the labels. :func:`spectrum` runs
that series once per channel with the same calls in the same order (cp_measure defaults:
subsample 0.25, background sample 0.25, element size 10, 16 steps, 2-D), and
:func:`granularity` turns it into per-object values for one label image with cp_measure's
own upsample-and-average operator, so values equal cp_measure's (tested to 1e-6 relative).
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
import scipy.ndimage
import skimage.morphology
from cp_measure.core.measuregranularity import _make_fused_upsample_mean

SUBSAMPLE = 0.25
BACKGROUND_SAMPLE = 0.25
ELEMENT_SIZE = 10
SPECTRUM_LENGTH = 16


@dataclass(frozen=True)
class Spectrum:
    """The opening series of one channel.

    Attributes
    ----------
    pixels : np.ndarray
        ``(H, W)`` original pixels (per-object start means use them).
    new_shape : np.ndarray
        Shape of the subsampled image, or ``None`` when the image is too small (NaN output).
    reconstructions : list of np.ndarray
        ``SPECTRUM_LENGTH`` reconstructions (erosion then reconstruction) at the subsampled scale.
    """

    pixels: np.ndarray
    new_shape: np.ndarray | None
    reconstructions: list


def _resample(image: np.ndarray, shape, factor: float) -> np.ndarray:
    i, j = np.mgrid[0: shape[0], 0: shape[1]].astype(float) / factor
    return scipy.ndimage.map_coordinates(image, (i, j), order=1)


def _background(pixels: np.ndarray, new_shape: np.ndarray) -> np.ndarray:
    back_shape = new_shape * BACKGROUND_SAMPLE
    back = _resample(pixels, back_shape, BACKGROUND_SAMPLE)
    disk = skimage.morphology.disk(ELEMENT_SIZE, dtype=bool)
    back = skimage.morphology.dilation(skimage.morphology.erosion(back, footprint=disk),
                                       footprint=disk)
    i, j = np.mgrid[0: new_shape[0], 0: new_shape[1]].astype(float)
    i *= (back_shape[0] - 1) / (new_shape[0] - 1)
    j *= (back_shape[1] - 1) / (new_shape[1] - 1)
    return scipy.ndimage.map_coordinates(back, (i, j), order=1)


@numba.njit(cache=True)
def _erode_cross(image):
    """Grayscale erosion by ``disk(1)`` (the 4-neighbour cross); pixels outside are ignored,
    which equals skimage's ``reflect`` border for this footprint."""
    h, w = image.shape
    out = image.copy()
    for i in range(h):
        for j in range(w):
            v = image[i, j]
            if i > 0:
                v = min(v, image[i - 1, j])
            if i < h - 1:
                v = min(v, image[i + 1, j])
            if j > 0:
                v = min(v, image[i, j - 1])
            if j < w - 1:
                v = min(v, image[i, j + 1])
            out[i, j] = v
    return out


@numba.njit(cache=True)
def _reconstruct(seed, mask):
    """Grayscale reconstruction by dilation of ``seed`` under ``mask``, 4-connected.

    Vincent's (1993) hybrid algorithm: a raster and an anti-raster scan, then a FIFO
    propagation. Every output value is a value of ``seed`` or ``mask``, so any correct
    algorithm returns the same array as ``skimage.morphology.reconstruction`` with the
    ``disk(1)`` footprint; the test compares them exactly.
    """
    h, w = seed.shape
    out = np.minimum(seed, mask)
    for i in range(h):                      # forward scan: up and left neighbours
        for j in range(w):
            v = out[i, j]
            if i > 0:
                v = max(v, out[i - 1, j])
            if j > 0:
                v = max(v, out[i, j - 1])
            out[i, j] = min(v, mask[i, j])
    queue = np.empty(h * w * 4 + 1, np.int64)
    head = tail = 0
    for i in range(h - 1, -1, -1):          # backward scan: down and right neighbours
        for j in range(w - 1, -1, -1):
            v = out[i, j]
            if i < h - 1:
                v = max(v, out[i + 1, j])
            if j < w - 1:
                v = max(v, out[i, j + 1])
            v = min(v, mask[i, j])
            out[i, j] = v
            if ((i < h - 1 and out[i + 1, j] < v and out[i + 1, j] < mask[i + 1, j])
                    or (j < w - 1 and out[i, j + 1] < v and out[i, j + 1] < mask[i, j + 1])):
                queue[tail] = i * w + j
                tail += 1
    while head < tail:
        p = queue[head]
        head += 1
        i, j = p // w, p % w
        v = out[i, j]
        for di, dj in ((-1, 0), (1, 0), (0, -1), (0, 1)):
            ni, nj = i + di, j + dj
            if 0 <= ni < h and 0 <= nj < w and out[ni, nj] < v and out[ni, nj] != mask[ni, nj]:
                out[ni, nj] = min(v, mask[ni, nj])
                if tail == queue.size:       # compact the consumed front of the queue
                    queue[: tail - head] = queue[head:tail]
                    tail, head = tail - head, 0
                queue[tail] = ni * w + nj
                tail += 1
    return out


def spectrum(pixels: np.ndarray) -> Spectrum:
    """Opening series of one channel ``(H, W)`` (background-subtracted, subsampled)."""
    orig_shape = np.array(pixels.shape)
    new_shape = (orig_shape * SUBSAMPLE).astype(int)
    if (new_shape < 2).any():
        return Spectrum(pixels=pixels, new_shape=None, reconstructions=[])
    small = _resample(pixels, new_shape, SUBSAMPLE)
    small -= _background(small, new_shape)
    small[small < 0] = 0
    ero, recs = small, []
    for _ in range(SPECTRUM_LENGTH):
        ero = _erode_cross(ero)
        recs.append(_reconstruct(ero, small))
    return Spectrum(pixels=pixels, new_shape=new_shape, reconstructions=recs)


def granularity(labels: np.ndarray, spectra: list[Spectrum]) -> list[dict[str, np.ndarray]]:
    """``Granularity_1..16`` of each object of ``labels`` ``(H, W)`` (labels ``1..N``), per channel.

    Each step is the drop of the object's mean intensity between successive reconstructions,
    in percent of its mean original intensity, as cp_measure's ``get_granularity``. The
    upsample-and-average operator depends only on the labels, so it is built once for all
    channels.
    """
    n = int(labels.max()) if labels.size else 0
    keys = [f"Granularity_{k}" for k in range(1, SPECTRUM_LENGTH + 1)]
    mean_of = None
    out = []
    for spec in spectra:
        if spec.new_shape is None or n == 0:
            out.append({key: np.full(n, np.nan if spec.new_shape is None else 0.0) for key in keys})
            continue
        if mean_of is None:
            mean_of = _make_fused_upsample_mean(np.array(labels.shape), spec.new_shape, labels)
        current = np.asarray(scipy.ndimage.mean(spec.pixels, labels, np.arange(1, n + 1)),
                             dtype=np.float64).reshape(-1)
        start = np.maximum(current, np.finfo(float).eps)
        feats = {}
        for key, rec in zip(keys, spec.reconstructions):
            new = mean_of(rec)
            feats[key] = (current - new) * 100 / start
            current = new
        out.append(feats)
    return out
