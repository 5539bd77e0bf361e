"""Haralick texture as one compiled pass per object, numerically equal to cp_measure's.

cp_measure quantises the whole image per call (``img_as_ubyte``, masked, rescaled to the
gray levels) and calls ``mahotas.features.haralick`` per object, which builds dense
``(max+1)²`` co-occurrence matrices and evaluates the 13 features over every cell of them.
:func:`_texture_kernel` quantises only each object's own pixels (same arithmetic, the
rescale as a 256-entry table) into a small zero-margined box buffer, walks that buffer once
for all four directions, counting each unordered pair of non-zero levels in one table cell
and listing the cells in the order the pairs first occur, and evaluates the same 13 formulas
over the listed cells and the occupied marginal bins only, adding in mahotas' order (so the
values equal the dense evaluation's to the last bit). ``p log p`` is computed once per
distinct count. Objects without a pair in some direction get NaN in every direction, as
cp_measure (mahotas raises, cp_measure catches). Parity with cp_measure is tested to 1e-6
relative.
"""

from __future__ import annotations

import numba
import numpy as np
import skimage.exposure
import skimage.util

from .grouping import object_boxes

_MEMO = 4096        # counts below this share their p log p within one matrix


@numba.njit(cache=True, error_model="numpy")
def _object_levels(pixels, quantised, lut, labels, label, box, pad, local):
    """Gray levels of object ``label`` in its ``box`` into ``local``, an ``(h + pad,
    w + 2 pad)`` row-major buffer whose margins stay ``0``, as do pixels off the object, so
    that every neighbour at distance ``pad`` below or beside is inside it; returns the
    smallest non-zero and the largest level.

    Float pixels are quantised as ``img_as_ubyte`` does for float64 (``rint(255 v)`` clipped
    to ``[0, 255]``; NaN as 0); ``quantised`` pixels are bytes already. ``lut`` rescales the
    byte to the gray levels.
    """
    r0, r1, c0, c1 = box[0], box[1], box[2], box[3]
    stride, vmin, vmax = c1 - c0 + 2 * pad, 256, 0
    local[:(r1 - r0 + pad) * stride] = 0
    for r in range(r0, r1):
        row = (r - r0) * stride + pad - c0
        for c in range(c0, c1):
            if labels[r, c] == label:
                v = pixels[r, c]
                level = 0
                if quantised:
                    level = lut[int(v)]
                elif v > 0:             # negative and NaN clip to 0
                    level = lut[int(min(np.rint(v * 255.0), 255.0))]
                vmax = max(vmax, level)
                if level > 0:
                    vmin = min(vmin, level)
                local[row + c] = level
    return vmin, vmax


@numba.njit(cache=True, error_model="numpy")
def _cooccurrence(local, h, w, pad, table, cells, ncells):
    """Count, in one pass over the ``(h, w)`` box of :func:`_object_levels`, the pairs of
    non-zero levels at distance ``pad`` in mahotas' four directions, ``(0, 1)``, ``(1, 1)``,
    ``(1, 0)`` and ``(1, -1)`` (row, column).

    Per direction ``d``, each unordered pair of levels ``low <= high`` counts in
    ``table[d, 256 * low + high]``, and ``cells[d, :ncells[d]]`` lists the pairs in the order
    of their first occurrence in C order, as that key plus ``65536`` when it first came as
    ``(high, low)``. The list is appended to without a branch (the slot is written every time
    and kept only for a new pair): which pairs are new is unpredictable.
    """
    stride = w + 2 * pad
    step = (pad, pad * stride + pad, pad * stride, pad * stride - pad)
    ncells[:] = 0
    for r in range(h):
        for i in range(r * stride + pad, r * stride + pad + w):
            a = np.int64(local[i])
            if a == 0:
                continue
            for d in range(4):
                b = np.int64(local[i + step[d]])
                if b == 0:
                    continue
                key = (min(a, b) << 8) | max(a, b)
                count = table[d, key]
                n = ncells[d]
                cells[d, n] = key | ((a > b) << 16)
                ncells[d] = n + (count == 0)
                table[d, key] = count + 1


@numba.njit(cache=True, error_model="numpy")
def _cell_sums(table, cells, ncells, px, plus, minus, memo):
    """Sums over the cells of the symmetric matrix, in mahotas' cell order: an off-diagonal
    cell ``(a, b)`` stands for ``(a, b)`` then ``(b, a)`` with the pair's count, a diagonal one
    for twice the count. The total count is returned first."""
    pairs = 0
    for m in range(ncells):
        pairs += table[cells[m] & 0xFFFF]
    total = 2.0 * pairs
    asm = corr_sum = idm = ent = 0.0
    for m in range(ncells):
        key = cells[m] & 0xFFFF
        a, b = key >> 8, key & 0xFF
        if cells[m] > 0xFFFF:
            a, b = b, a
        count = table[key] if a != b else 2 * table[key]
        p = count / total
        if count < _MEMO and memo[0, count] == total:
            plogp = memo[1, count]
        else:
            plogp = np.log2(p) * p
            if count < _MEMO:
                memo[0, count], memo[1, count] = total, plogp
        d = abs(a - b)
        pp, corr, inv = p * p, a * b * p, p / (d * d + 1.0)
        if a != b:          # cells (a, b) then (b, a), each sum still adding one at a time
            px[a] += p
            px[b] += p
            asm = asm + pp + pp
            corr_sum = corr_sum + corr + corr
            idm = idm + inv + inv
            plus[a + b] = plus[a + b] + p + p
            minus[d] = minus[d] + p + p
            ent = ent - plogp - plogp
        else:
            px[a] += p
            asm += pp
            corr_sum += corr
            idm += inv
            plus[a + b] += p
            minus[d] += p
            ent -= plogp
    return total, asm, corr_sum, idm, ent


@numba.njit(cache=True, error_model="numpy")
def _haralick13(table, cells, ncells, vmin, maxv, scratch, out):
    """The 13 features of one direction's co-occurrence matrix (:func:`_cooccurrence`),
    whose non-zero levels lie in ``[vmin, maxv)``.

    mahotas' definitions, summed over the non-zero cells and the occupied marginal levels:
    empty cells add zero to every sum (mahotas maps ``log(0)`` to ``log(1)``), except the
    variance of ``P(|x-y|)``, which mahotas takes over all ``maxv`` bins, as here. The two
    cross entropies use ``sum_b p(a, b) = px(a)`` and ``sum px = 1``: HXY1 = HXY2 = 2 HX
    (mahotas sums them over the matrix; they agree to round-off). Each marginal is walked
    once for all its sums (each still adds in bin order), over its possible support only:
    the bins outside add exact zeros.
    """
    px, plus, minus, memo = scratch
    px, plus, minus = px[:maxv], plus[:2 * maxv], minus[:maxv]
    px[:] = 0.0
    plus[:] = 0.0
    minus[:] = 0.0
    _, asm, corr_sum, idm, ent = _cell_sums(table, cells, ncells, px, plus, minus, memo)
    ux = vx2 = px_sum = hx = 0.0
    for a in range(vmin, maxv):
        ux += px[a] * a
        vx2 += px[a] * a * a
        px_sum += px[a]
        if px[a] > 0:
            hx += np.log2(px[a]) * px[a]
    hx = -hx
    vx = vx2 - ux * ux
    sx = np.sqrt(vx)
    contrast = mean_minus = diff_ent = 0.0
    for d in range(maxv - vmin):
        contrast += d * d * minus[d]
        mean_minus += minus[d]
        if minus[d] > 0:
            diff_ent += np.log2(minus[d]) * minus[d]
    mean_minus /= maxv
    diff_var = 0.0
    for d in range(maxv):
        diff_var += (minus[d] - mean_minus) ** 2
    sum_avg = sum_sq = sum_ent = 0.0
    for t in range(2 * vmin, 2 * maxv - 1):
        sum_avg += t * plus[t]
        sum_sq += t * t * plus[t]
        if plus[t] > 0:
            sum_ent += np.log2(plus[t]) * plus[t]
    hxy1 = 2.0 * hx
    hxy2 = 2.0 * hx * px_sum
    out[0] = asm
    out[1] = contrast
    out[2] = 1.0 if sx == 0.0 else (corr_sum - ux * ux) / sx / sx
    out[3] = vx
    out[4] = idm
    out[5] = sum_avg
    out[6] = sum_sq - sum_avg * sum_avg
    out[7] = -sum_ent
    out[8] = ent
    out[9] = diff_var / maxv
    out[10] = -diff_ent
    out[11] = (ent - hxy1) if hx == 0.0 else (ent - hxy1) / hx
    out[12] = np.sqrt(max(0.0, 1 - np.exp(-2.0 * (hxy2 - ent))))


@numba.njit(cache=True, error_model="numpy")
def _texture_kernel(pixels, quantised, lut, labels, boxes, distance):
    """``(N, 4, 13)`` Haralick features of every object (NaN where a direction has no pair)."""
    n = boxes.shape[0]
    out = np.full((n, 4, 13), np.nan)
    area = 1
    for k in range(n):
        h, w = boxes[k, 1] - boxes[k, 0], boxes[k, 3] - boxes[k, 2]
        area = max(area, (h + distance) * (w + 2 * distance))
    local = np.empty(area, np.uint8)
    table = np.zeros((4, 256 * 256), np.int32)
    cells = np.empty((4, 256 * 257 // 2 + 1), np.int64)     # + 1: the branch-free append
    ncells = np.zeros(4, np.int64)
    scratch = (np.empty(256), np.empty(512), np.empty(256), np.full((2, _MEMO), -1.0))
    for k in range(n):
        h, w = boxes[k, 1] - boxes[k, 0], boxes[k, 3] - boxes[k, 2]
        if h <= 0:
            continue
        vmin, vmax = _object_levels(pixels, quantised, lut, labels, k + 1, boxes[k], distance,
                                    local)
        _cooccurrence(local, h, w, distance, table, cells, ncells)
        for d in range(4):
            # mahotas raises without a pair in some direction; cp_measure leaves the object NaN
            if ncells.min() > 0:
                _haralick13(table[d], cells[d], ncells[d], vmin, vmax + 1, scratch,
                            out[k, d])
            for m in range(ncells[d]):
                table[d, cells[d, m] & 0xFFFF] = 0
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
        ``(H, W)`` image; float64 in [0, 1] is quantised in the kernel, other dtypes by
        ``skimage.util.img_as_ubyte`` first (as cp_measure).
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

    pixels = np.asarray(pixels)
    quantised = pixels.dtype != np.float64
    if quantised:           # other dtypes: skimage's own conversion, then bytes
        pixels = skimage.util.img_as_ubyte(pixels)
    elif pixels.size and (pixels.min() < -1.0 or pixels.max() > 1.0):
        raise ValueError("Images of type float must be between -1 and 1.")   # img_as_ubyte's
    lut = np.arange(256)
    if gray_levels != 256:
        lut = skimage.exposure.rescale_intensity(
            lut.astype(np.uint8), in_range=(0, 255),
            out_range=(0, gray_levels - 1)).astype(np.uint8)    # elementwise: a table
    if boxes is None:
        boxes = object_boxes(masks, int(masks.max()) if masks.size else 0)
    feats = _texture_kernel(np.ascontiguousarray(pixels), quantised, lut.astype(np.int64),
                            np.ascontiguousarray(masks), boxes, int(scale))
    feats = feats[boxes[:, 1] > boxes[:, 0]]             # regionprops' objects: labels that occur
    return {f"{name}_{scale:d}_{d:02d}_{gray_levels:d}": np.ascontiguousarray(feats[:, d, k])
            for d in range(4) for k, name in enumerate(F_HARALICK)}
