"""Haralick texture on sparse co-occurrence matrices, numerically equal to cp_measure's.

cp_measure calls ``mahotas.features.haralick`` per object, which builds dense
``(max+1)²`` co-occurrence matrices and evaluates the 13 features over every cell of
them. An object of a few hundred pixels fills only a few hundred cells, so we build the
matrix sparsely (``np.unique`` over encoded pixel pairs) and evaluate the same formulas over
its non-zero cells and the occupied marginal levels. Zero cells contribute zero to every sum
(mahotas maps ``log(0)`` to ``log(1)``), except the variance of ``P(|x-y|)``, which mahotas
takes over all ``max+1`` bins; we add the empty bins' share in closed form. Parity with
cp_measure is tested to 1e-6 relative.
"""

from __future__ import annotations

import numpy as np
import skimage.exposure
import skimage.measure
import skimage.util

DELTAS_2D = ((0, 1), (1, 1), (1, 0), (1, -1))   # mahotas' _2d_deltas order


def _pairs(img: np.ndarray, dy: int, dx: int) -> tuple[np.ndarray, np.ndarray]:
    h, w = img.shape
    b = img[max(0, dy): h + min(0, dy), max(0, dx): w + min(0, dx)]
    a = img[max(0, -dy): h - max(0, dy), max(0, -dx): w - max(0, dx)]
    return a.ravel(), b.ravel()


def _entropy(p: np.ndarray) -> float:
    p = p[p > 0]
    return float(-np.dot(np.log2(p), p))


def _features(i: np.ndarray, j: np.ndarray, counts: np.ndarray, maxv: int) -> np.ndarray:
    """The 13 mahotas features from the non-zero cells (i, j, count) of a symmetric matrix."""
    p = counts / float(counts.sum())
    levels, inv = np.unique(i, return_inverse=True)
    px = np.bincount(inv, weights=p)             # marginal over occupied levels (= py)
    k = levels.astype(np.float64)
    ux = np.dot(px, k)
    vx = np.dot(px, k * k) - ux ** 2
    sx = np.sqrt(vx)
    plus = np.bincount(i + j, weights=p)
    diff = np.abs(i - j)
    minus = np.bincount(diff, weights=p, minlength=maxv)
    f = np.empty(13)
    f[0] = np.dot(p, p)
    f[1] = np.dot(np.arange(len(minus), dtype=np.float64) ** 2, minus)
    f[2] = 1.0 if sx == 0.0 else (np.dot((i * j).astype(np.float64), p) - ux * ux) / sx / sx
    f[3] = vx
    f[4] = np.dot(1.0 / (diff.astype(np.float64) ** 2 + 1), p)
    tk = np.arange(len(plus), dtype=np.float64)
    f[5] = np.dot(tk, plus)
    f[7] = _entropy(plus)
    f[6] = np.dot(tk * tk, plus) - f[5] ** 2
    f[8] = _entropy(p)
    f[9] = minus[:maxv].var()
    f[10] = _entropy(minus)
    hx = _entropy(px)
    cross = np.outer(px, px)
    cross_p = cross[inv[: len(i)], np.searchsorted(levels, j)]
    hxy1 = -np.dot(p, np.log2(cross_p))
    hxy2 = _entropy(cross.ravel())
    f[11] = (f[8] - hxy1) if hx == 0.0 else (f[8] - hxy1) / hx
    f[12] = np.sqrt(max(0.0, 1 - np.exp(-2.0 * (hxy2 - f[8]))))
    return f


def haralick(img: np.ndarray, distance: int) -> np.ndarray:
    """``(4, 13)`` Haralick features of a uint8 crop, zeros ignored (mahotas semantics).

    Raises
    ------
    ValueError
        When a direction has no pair of non-zero pixels (as mahotas does).
    """
    maxv = int(img.max()) + 1
    img = img.astype(np.int64)
    out = np.empty((4, 13))
    for d, (dy, dx) in enumerate(DELTAS_2D):
        a, b = _pairs(img, dy * distance, dx * distance)
        keep = (a > 0) & (b > 0)
        a, b = a[keep], b[keep]
        if a.size == 0:
            raise ValueError("no co-occurring non-zero pixel pairs")
        code = np.concatenate([a * maxv + b, b * maxv + a])   # symmetric matrix
        cells, counts = np.unique(code, return_counts=True)
        out[d] = _features(cells // maxv, cells % maxv, counts.astype(np.float64), maxv)
    return out


def get_texture(masks: np.ndarray, pixels: np.ndarray, scale: int = 3,
                gray_levels: int = 256) -> dict[str, np.ndarray]:
    """Drop-in for ``cp_measure.core.measuretexture.get_texture`` (2-D), same keys and values.

    Parameters
    ----------
    masks : np.ndarray
        ``(H, W)`` labels ``1..N`` (sanitised).
    pixels : np.ndarray
        ``(H, W)`` float image in [0, 1].
    scale : int
        Co-occurrence distance.
    gray_levels : int
        Quantisation levels (2..256).

    Returns
    -------
    dict[str, np.ndarray]
        ``{Feature}_{scale}_{direction:02d}_{gray_levels}`` → one value per object.
    """
    from cp_measure.core.measuretexture import F_HARALICK

    pixels = skimage.util.img_as_ubyte(pixels, force_copy=True)
    pixels[~masks.astype(bool)] = 0
    if gray_levels != 256:
        pixels = skimage.exposure.rescale_intensity(
            pixels, in_range=(0, 255), out_range=(0, gray_levels - 1)).astype(np.uint8)
    props = skimage.measure.regionprops(masks, pixels)
    feats = np.empty((4, 13, len(props)))
    for index, prop in enumerate(props):
        try:
            feats[:, :, index] = haralick(prop.image_intensity, scale)
        except ValueError:
            feats[:, :, index] = np.nan
    return {f"{name}_{scale:d}_{d:02d}_{gray_levels:d}": feats[d, n]
            for d in range(4) for n, name in enumerate(F_HARALICK)}
