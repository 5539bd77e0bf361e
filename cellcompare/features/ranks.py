"""Dense ranks of pixel values within each object (0 = the object's lowest value).

Correlation's RWC ranks each object's pixels among its distinct values, as cp_measure's
``scipy.stats.rankdata(method="dense")`` per object. Images read from integer files hold few
distinct values, so each channel's values are coded once by a hash of their bits
(:func:`_level_codes`, ±0 one value, NaN one value) and each object ranks its codes by
scanning their range; with many distinct values each object is sorted instead.
"""

from __future__ import annotations

import numba
import numpy as np

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)          # Fibonacci hashing multiplier
_NAN_BITS = np.uint64(0x7FF8000000000000)


@numba.njit(cache=True, error_model="numpy")
def _slot(key, shift, mask, keys, slot):
    """Slot of ``key`` in an open-addressing table, or the empty slot where it belongs."""
    h = np.int64(((key ^ (key >> np.uint64(32))) * _GOLDEN) >> shift)
    while slot[h] >= 0 and keys[h] != key:
        h = (h + 1) & mask
    return h


@numba.njit(cache=True, error_model="numpy")
def _code_run(values, start, keys, slot, distinct, count, codes):
    """Code values from ``start`` on by first appearance, adding new ones to the table and to
    ``distinct``, until the table is half full or ``distinct`` is; returns where it stopped
    and the count of distinct values."""
    mask = keys.size - 1
    shift = np.uint64(64 - int(np.log2(keys.size)))
    bits = values.view(np.uint64)
    for i in range(start, values.size):
        x, key = values[i], bits[i]
        if x == 0.0 or np.isnan(x):              # one key for ±0, one for all NaNs
            x = 0.0 if x == 0.0 else np.nan
            key = np.uint64(0) if x == 0.0 else _NAN_BITS
        h = _slot(key, shift, mask, keys, slot)
        if slot[h] < 0:
            if count == distinct.size or 2 * count >= mask:
                return i, count
            keys[h], slot[h], distinct[count] = key, count, x
            count += 1
        codes[i] = slot[h]
    return values.size, count


@numba.njit(cache=True, error_model="numpy")
def _level_codes(values, limit):
    """Index of every value among the sorted distinct values (``±0`` one value, NaNs one
    value, as ``np.unique``), by hashing the bits; ``(codes, count)``, ``count = -1`` once
    there are more than ``limit`` distinct values."""
    keys, slot = np.zeros(1024, np.uint64), np.full(1024, -1, np.int64)
    distinct, codes = np.empty(limit), np.empty(values.size, np.int64)
    start, count = _code_run(values, 0, keys, slot, distinct, 0, codes)
    while start < values.size:
        if count == limit:
            return codes, -1
        used = slot >= 0                         # table half full: double it
        old_keys, old_slot = keys[used], slot[used]
        keys, slot = np.zeros(2 * keys.size, np.uint64), np.full(2 * keys.size, -1, np.int64)
        shift = np.uint64(64 - int(np.log2(keys.size)))
        for j in range(old_keys.size):
            h = _slot(old_keys[j], shift, keys.size - 1, keys, slot)
            keys[h], slot[h] = old_keys[j], old_slot[j]
        start, count = _code_run(values, start, keys, slot, distinct, count, codes)
    order = np.argsort(distinct[:count])
    position = np.empty(count, np.int64)
    position[order] = np.arange(count)
    for i in range(values.size):
        codes[i] = position[codes[i]]
    return codes, count


@numba.njit(cache=True, error_model="numpy")
def rank_by_sorting(x, out):
    order = np.argsort(x)
    rank = 0
    for i in range(x.size):
        if i > 0 and x[order[i]] != x[order[i - 1]]:
            rank += 1
        out[order[i]] = rank


@numba.njit(cache=True, error_model="numpy")
def _dense_ranks_of_codes(codes, offsets, n_codes):
    """Per object, the rank of each pixel's code among the codes present in the object (in
    place): by a presence table over the object's range of codes, or by sorting where that
    range is wide."""
    present = np.zeros(n_codes, np.int64)
    for k in range(offsets.size - 1):
        a, z = offsets[k], offsets[k + 1]
        if a == z:
            continue
        lo = hi = codes[a]
        for i in range(a, z):
            lo, hi = min(lo, codes[i]), max(hi, codes[i])
        if hi - lo > 4 * (z - a) + 256:
            rank_by_sorting(codes[a:z].copy(), codes[a:z])
            continue
        for i in range(a, z):
            present[codes[i]] = 1
        rank = -1
        for c in range(lo, hi + 1):     # present[c] becomes the rank of code c
            if present[c]:
                rank += 1
                present[c] = rank + 1   # +1 keeps 0 meaning "absent" during the scan
        for i in range(a, z):
            codes[i] = present[codes[i]] - 1
        present[lo:hi + 1] = 0
    return codes


def dense_ranks(values: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Per object, each pixel's rank among the object's distinct values (0 = lowest).

    Images from integer files hold few distinct values, so the values are coded once for the
    whole channel (a hash of their bits) and ranked per object by codes; otherwise (more
    distinct values than four pixels per object) each object is sorted.
    """
    values = np.ascontiguousarray(values, dtype=np.float64)
    codes, count = _level_codes(values, 4 * values.size // max(offsets.size - 1, 4))
    if count >= 0:
        return _dense_ranks_of_codes(codes, offsets, count)
    return _dense_ranks(values, offsets)


@numba.njit(cache=True, error_model="numpy")
def _dense_ranks(values, offsets):
    """Per object, the rank of each pixel among the object's distinct values (0 = lowest)."""
    ranks = np.empty(values.size, np.int64)
    for k in range(offsets.size - 1):
        rank_by_sorting(values[offsets[k]:offsets[k + 1]], ranks[offsets[k]:offsets[k + 1]])
    return ranks
