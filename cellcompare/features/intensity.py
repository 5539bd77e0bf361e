"""Intensity family (and intensity Locations) as one compiled pass per object type.

cp_measure's ``get_intensity`` slices every object's bounding box, masks it and sorts its
pixels per channel, and finds the object edges (``skimage.segmentation.find_boundaries``)
again for every channel. Here the pixels are grouped once per object type
(:mod:`features.grouping`, C order as cp_measure's crops), their edge flags are found once by
a compiled 4-neighbour test, and one numba kernel walks every object once for all channels,
with cp_measure's definitions: population std, quartiles and median by linear interpolation at
``(n - 1 + offset) q`` (:mod:`features.conventions`: offset 1 is CellProfiler 4's ``n q``,
cp_measure's ``legacy=True``; offset 0 its default), MAD at the same position of the sorted
absolute deviations from the median,
the first maximum in C order, and the centre of mass weighted by intensity. The order
statistics are selected, not sorted (they are exact values, so any correct selection gives the
same numbers): a histogram of each object's values tells which few values to select among
(:func:`_bucket_select`), and the MAD's candidates are narrowed by the quartiles first
(:func:`_order_stats`). Sums add in C pixel order. Parity is tested to 1e-6 relative.
"""

from __future__ import annotations

import numba
import numpy as np

from .conventions import CONVENTIONS, DEFAULT_CONVENTION, Convention
from .grouping import ObjectPixels

KEYS = ("Intensity_IntegratedIntensity", "Intensity_MeanIntensity", "Intensity_StdIntensity",
        "Intensity_MinIntensity", "Intensity_MaxIntensity", "Intensity_MassDisplacement",
        "Intensity_LowerQuartileIntensity", "Intensity_MedianIntensity",
        "Intensity_MADIntensity", "Intensity_UpperQuartileIntensity",
        "Location_CenterMassIntensity_X", "Location_CenterMassIntensity_Y",
        "Location_CenterMassIntensity_Z", "Location_MaxIntensity_X", "Location_MaxIntensity_Y",
        "Location_MaxIntensity_Z", "Intensity_IntegratedIntensityEdge",
        "Intensity_MeanIntensityEdge", "Intensity_StdIntensityEdge",
        "Intensity_MinIntensityEdge", "Intensity_MaxIntensityEdge")

_SMALL = 16     # segments shorter than this are insertion-sorted


@numba.njit(cache=True, error_model="numpy")
def _bounds(n, frac, offset):
    pos = (n - 1 + offset) * frac
    lo = min(int(pos), n - 1)
    return lo, min(lo + 1, n - 1), pos - lo


@numba.njit(cache=True, error_model="numpy")
def _insertion_sort(a, lo, hi):
    for i in range(lo + 1, hi + 1):
        v = a[i]
        j = i - 1
        while j >= lo and a[j] > v:
            a[j + 1] = a[j]
            j -= 1
        a[j + 1] = v


@numba.njit(cache=True, error_model="numpy")
def _partition(a, lo, hi):
    """Partition ``a[lo:hi + 1]`` (3 or more values) around its median of three; returns the
    pivot's final index ``p``: ``a[lo:p] <= a[p] <= a[p + 1:hi + 1]``."""
    mid = (lo + hi) >> 1
    a[mid], a[lo + 1] = a[lo + 1], a[mid]
    if a[lo] > a[hi]:
        a[lo], a[hi] = a[hi], a[lo]
    if a[lo + 1] > a[hi]:
        a[lo + 1], a[hi] = a[hi], a[lo + 1]
    if a[lo] > a[lo + 1]:
        a[lo], a[lo + 1] = a[lo + 1], a[lo]
    pivot = a[lo + 1]
    i, j = lo + 1, hi
    while True:                     # a[lo] and a[hi] are sentinels for the scans
        i += 1
        while a[i] < pivot:
            i += 1
        j -= 1
        while a[j] > pivot:
            j -= 1
        if j < i:
            break
        a[i], a[j] = a[j], a[i]
    a[lo + 1] = a[j]
    a[j] = pivot
    return j


@numba.njit(cache=True, error_model="numpy")
def _select(a, n, ranks, stack):
    """Rearrange ``a[:n]`` (no NaN) so that ``a[r]`` is its ``r``-th smallest value for every
    ``r`` of ``ranks`` (ascending): a quickselect that follows only the segments holding a
    wanted rank. ``stack`` is ``(len(ranks) + 1, 4)`` int64 scratch. After too many
    partitions (adversarial input) the current segment is sorted instead."""
    stack[0, 0], stack[0, 1], stack[0, 2], stack[0, 3] = 0, n - 1, 0, ranks.size
    depth = 1
    while (1 << depth) < n:
        depth += 1
    top, budget = 1, 4 * (depth + 2) * ranks.size        # about twice the expected
    while top > 0:
        top -= 1
        lo, hi, r0, r1 = stack[top, 0], stack[top, 1], stack[top, 2], stack[top, 3]
        while r0 < r1:
            if hi - lo < _SMALL:
                _insertion_sort(a, lo, hi)
                break
            budget -= 1
            if budget < 0:
                a[lo:hi + 1].sort()
                break
            p = _partition(a, lo, hi)
            s = r0
            while s < r1 and ranks[s] < p:
                s += 1
            e = s
            while e < r1 and ranks[e] == p:
                e += 1
            if s > r0 and e < r1:       # ranks on both sides: the right one waits
                stack[top, 0], stack[top, 1], stack[top, 2], stack[top, 3] = p + 1, hi, e, r1
                top += 1
            if s > r0:
                hi, r1 = p - 1, s
            else:
                lo, r0 = p + 1, e


@numba.njit(cache=True, error_model="numpy")
def _bucket_select(vals, m, low, high, ranks, picked, scratch):
    """``picked[i]`` = the ``ranks[i]``-th smallest of ``vals[:m]`` (ranks ascending, values
    finite within ``[low, high]``).

    A histogram over ``m / 4`` equal-width buckets is monotone in the value, so it tells which
    bucket holds each wanted rank and its rank there; only those buckets' values are gathered
    and selected. ``vals`` is left unchanged unless the values are too few or their span
    is not representable, where ``vals`` itself is quickselected.
    """
    hist, work, meta, stack = scratch[0], scratch[1], scratch[2], scratch[3]
    span = high - low
    nb = min(m >> 2, hist.size)
    scale = nb / span if span > 0 else 0.0
    if nb < _SMALL or not (np.isfinite(span) and np.isfinite(scale) and scale > 0):
        _select(vals, m, ranks, stack)
        for i in range(ranks.size):
            picked[i] = vals[ranks[i]]
        return
    codes, top = scratch[6], nb - 1
    for j in range(m):              # apart from the histogram, so that it vectorises
        codes[j] = min(int((vals[j] - low) * scale), top)
    hist[:nb] = 0
    for j in range(m):
        hist[codes[j]] += 1
    # meta[s] = bucket, first value of the bucket in sorted order, fill position, start in work
    nslot, cum, b, start = 0, 0, 0, 0
    for i in range(ranks.size):
        while cum + hist[b] <= ranks[i]:
            cum += hist[b]
            b += 1
        if nslot == 0 or meta[nslot - 1, 0] != b:
            meta[nslot, 0], meta[nslot, 1], meta[nslot, 2], meta[nslot, 3] = b, cum, start, start
            start += hist[b]
            nslot += 1
        meta[6 + i, 0], meta[6 + i, 1] = nslot - 1, ranks[i] - cum    # slot, rank in bucket
    for s in range(nslot):
        hist[meta[s, 0]] = -1 - s
    for j in range(m):
        t = hist[codes[j]]
        if t < 0:
            work[meta[-1 - t, 2]] = vals[j]
            meta[-1 - t, 2] += 1
    i = 0
    while i < ranks.size:               # ranks of one slot are consecutive
        s, e = meta[6 + i, 0], i
        while e < ranks.size and meta[6 + e, 0] == s:
            e += 1
        seg = work[meta[s, 3]:meta[s, 2]]
        _select(seg, seg.size, meta[6 + i:6 + e, 1], stack)
        for q in range(i, e):
            picked[q] = seg[meta[6 + q, 1]]
        i = e


@numba.njit(cache=True, error_model="numpy")
def _order_stats(buf, m, low, high, scratch, row, offset):
    """Quartiles, median and MAD of ``buf[:m]`` (values in ``[low, high]``) into ``row[6:10]``,
    at the positions of the rank ``offset`` (:class:`~.conventions.Convention`).

    The MAD's two order statistics lie in a band of absolute deviations bounded by the
    quartile order statistics: fewer than ``lo`` deviations are below the band's floor
    (they belong to values strictly between the inner quartile statistics) and at least
    ``lo + 2`` are within its ceiling (the values between the outer ones). One pass counts
    the deviations below the band and gathers those in it; the bounds are checked, and
    every deviation is selected instead should they fail (never for 64 values or more).
    """
    hist, work, meta, stack, ranks, got, codes = scratch
    lo1, hi1, f1 = _bounds(m, 0.25, offset)
    lo2, hi2, f2 = _bounds(m, 0.5, offset)
    lo3, hi3, f3 = _bounds(m, 0.75, offset)
    ranks[0], ranks[1], ranks[2], ranks[3], ranks[4], ranks[5] = lo1, hi1, lo2, hi2, lo3, hi3
    _bucket_select(buf, m, low, high, ranks, got, scratch)
    median = got[2] * (1.0 - f2) + got[3] * f2
    row[6] = got[0] * (1.0 - f1) + got[1] * f1
    row[7] = median
    row[9] = got[4] * (1.0 - f3) + got[5] * f3
    floor = min(median - got[1], got[4] - median)
    ceil = max(median - got[0], got[5] - median)
    below, inside = 0, 0
    for j in range(m):
        d = abs(buf[j] - median)
        work[inside] = d
        inside += (d >= floor) & (d <= ceil)
        below += d < floor
    ranks[0], ranks[1] = lo2 - below, hi2 - below
    if m >= 64 and ranks[0] >= 0 and ranks[1] < inside:
        _bucket_select(work, inside, floor, ceil, ranks[:2], got,
                       (hist, buf, meta, stack, ranks, got, codes))
    else:
        for j in range(m):
            buf[j] = abs(buf[j] - median)
        ranks[0], ranks[1] = lo2, hi2
        _select(buf, m, ranks[:2], stack)
        got[0], got[1] = buf[lo2], buf[hi2]
    row[8] = got[0] * (1.0 - f2) + got[1] * f2


@numba.njit(cache=True, error_model="numpy")
def _moments(vals, m):
    """Sum, mean and population std of ``vals[:m]``, summed in order."""
    total = 0.0
    for j in range(m):
        total += vals[j]
    mean = total / m
    acc = 0.0
    for j in range(m):
        acc += (vals[j] - mean) * (vals[j] - mean)
    return total, mean, np.sqrt(acc / m)


@numba.njit(cache=True, error_model="numpy")
def _object_stats(values, index, edge, rows, cols, buf, rim, scratch, row, offset):
    """The 21 values of one object in one channel into ``row`` (left zero when the object has
    no finite pixel). ``values`` is the flat channel, ``rows``/``cols`` the coordinates of
    ``index``; ``buf`` and ``rim`` are scratch for the object's finite and edge values."""
    m, nrim, row_sum, col_sum, row_w, col_w = 0, 0, 0.0, 0.0, 0.0, 0.0
    low, high, top = np.inf, -np.inf, 0
    for i in range(index.size):
        v = values[index[i]]
        if not np.isfinite(v):
            continue
        buf[m] = v
        m += 1
        rim[nrim] = v
        nrim += edge[i]
        row_sum += rows[i]
        col_sum += cols[i]
        row_w += rows[i] * v
        col_w += cols[i] * v
        low = min(low, v)
        if v > high:                 # first maximum in C order, as argmax
            high, top = v, i
    if m == 0:
        return
    total, mean, std = _moments(buf, m)
    cy, cx = row_sum / m, col_sum / m
    if total != 0:
        my, mx, mz = row_w / total, col_w / total, 0.0
    else:
        my = mx = mz = np.nan
    row[0], row[1], row[2], row[3], row[4] = total, mean, std, low, high
    row[5] = np.sqrt(mz * mz + (my - cy) ** 2 + (mx - cx) ** 2)
    row[10], row[11], row[12] = mx, my, mz
    row[13], row[14], row[15] = cols[top], rows[top], 0.0
    _order_stats(buf, m, low, high, scratch, row, offset)
    if nrim:
        row[16], row[17], row[18] = _moments(rim, nrim)
        row[19], row[20] = rim[:nrim].min(), rim[:nrim].max()


@numba.njit(cache=True, error_model="numpy")
def _intensity_kernel(image, index, edge, offsets, width, rank_offset):
    """``(C, N, 21)`` features of ``image`` ``(C, H * W)`` for every object of the grouping."""
    n = offsets.size - 1
    out = np.zeros((image.shape[0], n, 21))
    largest = 0
    for k in range(n):
        largest = max(largest, offsets[k + 1] - offsets[k])
    buf, rim = np.empty(largest), np.empty(largest)            # finite and edge values
    rows, cols = np.empty(largest), np.empty(largest)
    # _order_stats' scratch: histogram, gather buffer, bucket slots, selection stack,
    # ranks, picked values, bucket codes
    scratch = (np.empty(max(largest >> 2, 1), np.int64), np.empty(largest),
               np.zeros((12, 4), np.int64), np.empty((7, 4), np.int64),
               np.empty(6, np.int64), np.empty(6), np.empty(largest, np.int32))
    for k in range(n):
        a, z = offsets[k], offsets[k + 1]
        for i in range(z - a):
            rows[i], cols[i] = index[a + i] // width, index[a + i] % width
        for ch in range(image.shape[0]):
            _object_stats(image[ch], index[a:z], edge[a:z], rows, cols, buf, rim, scratch,
                          out[ch, k], rank_offset)
    return out


@numba.njit(cache=True, error_model="numpy")
def _inner_edges(labels, index):
    height, width = labels.shape
    out = np.empty(index.size, np.bool_)
    for i in range(index.size):
        r, c = index[i] // width, index[i] % width
        v = labels[r, c]
        out[i] = ((r > 0 and labels[r - 1, c] != v) or (r + 1 < height and labels[r + 1, c] != v)
                  or (c > 0 and labels[r, c - 1] != v) or (c + 1 < width and labels[r, c + 1] != v))
    return out


def object_edges(groups: ObjectPixels, labels: np.ndarray) -> np.ndarray:
    """``(P,)`` bool: grouped pixels on their object's inner boundary (cp_measure's edge).

    Equal to ``skimage.segmentation.find_boundaries(labels, mode="inner")`` at the grouped
    pixels: a pixel whose 4-neighbour inside the image has another label (the image border
    is no boundary, as skimage's reflected padding).
    """
    return _inner_edges(np.ascontiguousarray(labels), groups.index)


def intensity(groups: ObjectPixels, edges: np.ndarray, image: np.ndarray, *,
              convention: Convention = CONVENTIONS[DEFAULT_CONVENTION]) -> list[dict[str, np.ndarray]]:
    """Intensity and Location features of every channel of ``image`` ``(C, H, W)``.

    Parameters
    ----------
    groups : ObjectPixels
        Grouped pixels of the sanitised label image.
    edges : np.ndarray
        :func:`object_edges` of the same label image.
    image : np.ndarray
        ``(C, H, W)`` float image (float32 or float64 read in place; other dtypes as float64).
    convention : Convention
        Quantile definition of the quartiles, median and MAD (default CellProfiler 4's).

    Returns
    -------
    list of dict[str, np.ndarray]
        Per channel, cp_measure's keys (``Intensity_MeanIntensity``,
        ``Location_MaxIntensity_X`` ...), one value per object.
    """
    # float32 pixels are read as they are (the kernel widens each value to float64 exactly):
    # no float64 copy of every channel
    dtype = image.dtype if image.dtype in (np.float32, np.float64) else np.float64
    flat = np.ascontiguousarray(image, dtype=dtype).reshape(len(image), -1)
    table = _intensity_kernel(flat, groups.index, np.ascontiguousarray(edges, np.bool_),
                              groups.offsets, groups.shape[1], float(convention.rank_offset))
    return [{key: np.ascontiguousarray(channel[:, i]) for i, key in enumerate(KEYS)}
            for channel in table]
