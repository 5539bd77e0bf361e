"""Haralick texture as one compiled pass per object, numerically equal to cp_measure's.

cp_measure calls ``mahotas.features.haralick`` per object, which builds dense
``(max+1)²`` co-occurrence matrices and evaluates the 13 features over every cell of them.
:func:`_texture_kernel` walks each object's bounding box once per direction, counts pairs of
non-zero pixels of that object, remembers which cells it filled, and evaluates the same 13
formulas over those cells only. Objects without a pair in some direction get NaN in
every direction, as cp_measure (mahotas raises, cp_measure catches). Parity with cp_measure is
tested to 1e-6 relative.
"""

from __future__ import annotations

import numba
import numpy as np
import skimage.exposure
import skimage.util

from .grouping import object_boxes


@numba.njit(cache=True, error_model="numpy")
def _entropy_sum(p):
    acc = 0.0
    for v in p:
        if v > 0:
            acc += np.log2(v) * v
    return -acc


@numba.njit(cache=True, error_model="numpy")
def _haralick13(counts, cells, ncells, maxv, out):
    """The 13 features of one symmetric count matrix whose non-zero cells are ``cells[:ncells]``.

    mahotas' definitions, summed over the non-zero cells and the occupied marginal levels:
    empty cells add zero to every sum (mahotas maps ``log(0)`` to ``log(1)``), except the
    variance of ``P(|x-y|)``, which mahotas takes over all ``maxv`` bins, as here. The two
    cross entropies use ``sum_b p(a, b) = px(a)`` and ``sum px = 1``: HXY1 = HXY2 = 2 HX
    (mahotas sums them over the matrix; they agree to round-off).
    """
    total = 0.0
    for m in range(ncells):
        total += counts[cells[m, 0], cells[m, 1]]
    px = np.zeros(maxv)
    plus = np.zeros(2 * maxv)
    minus = np.zeros(maxv)
    asm = corr_sum = idm = ent = 0.0
    for m in range(ncells):
        a, b = cells[m, 0], cells[m, 1]
        p = counts[a, b] / total
        px[a] += p
        asm += p * p
        corr_sum += a * b * p
        d = abs(a - b)
        idm += p / (d * d + 1.0)
        plus[a + b] += p
        minus[d] += p
        ent -= np.log2(p) * p
    ux = vx2 = px_sum = 0.0
    for a in range(maxv):
        ux += px[a] * a
        vx2 += px[a] * a * a
        px_sum += px[a]
    vx = vx2 - ux * ux
    sx = np.sqrt(vx)
    contrast = mean_minus = 0.0
    for d in range(maxv):
        contrast += d * d * minus[d]
        mean_minus += minus[d]
    mean_minus /= maxv
    diff_var = 0.0
    for d in range(maxv):
        diff_var += (minus[d] - mean_minus) ** 2
    sum_avg = sum_sq = 0.0
    for t in range(2 * maxv):
        sum_avg += t * plus[t]
        sum_sq += t * t * plus[t]
    hx = _entropy_sum(px)
    hxy1 = 2.0 * hx
    hxy2 = 2.0 * hx * px_sum
    out[0] = asm
    out[1] = contrast
    out[2] = 1.0 if sx == 0.0 else (corr_sum - ux * ux) / sx / sx
    out[3] = vx
    out[4] = idm
    out[5] = sum_avg
    out[6] = sum_sq - sum_avg * sum_avg
    out[7] = _entropy_sum(plus)
    out[8] = ent
    out[9] = diff_var / maxv
    out[10] = _entropy_sum(minus)
    out[11] = (ent - hxy1) if hx == 0.0 else (ent - hxy1) / hx
    out[12] = np.sqrt(max(0.0, 1 - np.exp(-2.0 * (hxy2 - ent))))


@numba.njit(cache=True, error_model="numpy")
def _texture_kernel(quant, labels, boxes, distance):
    """``(N, 4, 13)`` Haralick features of every object (NaN where a direction has no pair)."""
    n = boxes.shape[0]
    out = np.full((n, 4, 13), np.nan)
    counts = np.zeros((256, 256))
    cells = np.zeros((256 * 256, 2), np.int64)
    deltas = ((0, 1), (1, 1), (1, 0), (1, -1))
    for k in range(n):
        r0, r1, c0, c1 = boxes[k, 0], boxes[k, 1], boxes[k, 2], boxes[k, 3]
        if r1 <= r0:
            continue
        vmax = 0
        for r in range(r0, r1):
            for c in range(c0, c1):
                if labels[r, c] == k + 1:
                    vmax = max(vmax, int(quant[r, c]))
        for d in range(4):
            dy, dx = deltas[d][0] * distance, deltas[d][1] * distance
            ncells = 0
            for r in range(max(r0, r0 - dy), min(r1, r1 - dy)):
                for c in range(max(c0, c0 - dx), min(c1, c1 - dx)):
                    if labels[r, c] != k + 1 or labels[r + dy, c + dx] != k + 1:
                        continue
                    a, b = quant[r, c], quant[r + dy, c + dx]
                    if a == 0 or b == 0:
                        continue
                    for x, y in ((a, b), (b, a)):      # symmetric matrix
                        if counts[x, y] == 0:
                            cells[ncells, 0], cells[ncells, 1] = x, y
                            ncells += 1
                        counts[x, y] += 1.0
            if ncells == 0:     # mahotas raises; cp_measure then leaves the object NaN
                out[k, :, :] = np.nan
                break
            _haralick13(counts, cells, ncells, vmax + 1, out[k, d])
            for m in range(ncells):
                counts[cells[m, 0], cells[m, 1]] = 0.0
    return out


def get_texture(masks: np.ndarray, pixels: np.ndarray, scale: int = 3,
                gray_levels: int = 256, *,
                boxes: np.ndarray | None = None) -> dict[str, np.ndarray]:
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
    boxes : np.ndarray, optional
        :func:`features.grouping.object_boxes` of ``masks``, shared by the channels of one
        object type.

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
    n = int(masks.max()) if masks.size else 0
    boxes = object_boxes(masks, n) if boxes is None else boxes
    feats = _texture_kernel(pixels, np.ascontiguousarray(masks, np.int64), boxes, int(scale))
    feats = feats[boxes[:, 1] > boxes[:, 0]]             # regionprops' objects: labels that occur
    return {f"{name}_{scale:d}_{d:02d}_{gray_levels:d}": np.ascontiguousarray(feats[:, d, k])
            for d in range(4) for k, name in enumerate(F_HARALICK)}
