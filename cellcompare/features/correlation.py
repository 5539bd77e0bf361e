"""Correlation family (Pearson, Slope, Manders, RWC, Costes) as one compiled pass per channel pair.

cp_measure walks every object four times per pair (once per measurement, each time slicing
its bounding box) and runs Costes' threshold bisection with ``scipy.stats.pearsonr`` at each
step. Here one numba kernel visits each object's pixels (grouped once, see
:mod:`features.grouping`) and computes all eight values with cp_measure's formulas
(``measurecolocalization._pearson_pair``, ``_manders_pair``, ``_rwc_pair``, ``_costes_pair``
with the "Faster" bisection): same thresholds (``thr`` = 15 % of the object's maximum), same
dense ranks, same bisection steps and NaN rules. The bisection reads each step's background
sums from one table per object (:func:`_background_table`) instead of a pass per step.
Parity is tested to 1e-6 relative.
"""

from __future__ import annotations

import numba
import numpy as np

from .grouping import ObjectPixels

THRESHOLD_PERCENT = 15
_EPS = np.finfo(np.float64).eps


@numba.njit(cache=True, error_model="numpy")
def _sum(x):
    total = 0.0
    for v in x:
        total += v
    return total


@numba.njit(cache=True, error_model="numpy")
def _var1(x):
    """Sample variance (ddof=1) and mean."""
    mean = _sum(x) / x.size
    acc = 0.0
    for v in x:
        acc += (v - mean) * (v - mean)
    return acc / (x.size - 1), mean


@numba.njit(cache=True, error_model="numpy")
def _pearson_slope(f, s):
    mf, ms = _sum(f) / f.size, _sum(s) / s.size
    sxx = sxy = syy = 0.0
    for k in range(f.size):
        df, ds = f[k] - mf, s[k] - ms
        sxx += df * df
        syy += ds * ds
        sxy += df * ds
    dof = f.size - 1.0
    cov, vf, vs = sxy / dof, sxx / dof, syy / dof
    r = cov / np.sqrt(vf) / np.sqrt(vs)
    if r > 1.0:
        r = 1.0
    elif r < -1.0:
        r = -1.0
    return r, cov / vf


@numba.njit(cache=True, error_model="numpy")
def _dense_ranks_of_codes(codes, offsets, n_codes):
    """Per object, the rank of each pixel's code among the codes present in the object."""
    ranks = np.empty(codes.size, np.int64)
    present = np.zeros(n_codes, np.int64)
    for k in range(offsets.size - 1):
        a, z = offsets[k], offsets[k + 1]
        for i in range(a, z):
            present[codes[i]] = 1
        rank = -1
        for c in range(n_codes):        # present[c] becomes the rank of code c
            if present[c]:
                rank += 1
                present[c] = rank + 1   # +1 keeps 0 meaning "absent" during the scan
        for i in range(a, z):
            ranks[i] = present[codes[i]] - 1
        present[:] = 0
    return ranks


def dense_ranks(values: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """Per object, each pixel's rank among the object's distinct values (0 = lowest).

    Images from integer files hold few distinct values, so the values are coded once for the
    whole channel and ranked per object by a presence table; otherwise each object is sorted.
    """
    levels, codes = np.unique(values, return_inverse=True)
    if levels.size * (offsets.size - 1) <= 4 * values.size:
        return _dense_ranks_of_codes(codes.astype(np.int64), offsets, levels.size)
    return _dense_ranks(values, offsets)


@numba.njit(cache=True, error_model="numpy")
def _dense_ranks(values, offsets):
    """Per object, the rank of each pixel among the object's distinct values (0 = lowest)."""
    ranks = np.empty(values.size, np.int64)
    for k in range(offsets.size - 1):
        x = values[offsets[k]:offsets[k + 1]]
        order = np.argsort(x)
        rank = 0
        for i in range(x.size):
            if i > 0 and x[order[i]] != x[order[i - 1]]:
                rank += 1
            ranks[offsets[k] + order[i]] = rank
    return ranks


@numba.njit(cache=True, error_model="numpy")
def _manders_rwc(f, s, r1, r2, thr):
    """Manders M1, M2 and RWC1, RWC2 of one object (cp_measure's thresholds and ranks)."""
    tff, tss = (thr / 100) * f.max(), (thr / 100) * s.max()
    big = max(r1.max(), r2.max()) + 1
    tot_f = tot_s = m1 = m2 = w1 = w2 = 0.0
    any_combined = False
    for k in range(f.size):
        if f[k] >= tff:
            tot_f += f[k]
        if s[k] >= tss:
            tot_s += s[k]
        if f[k] >= tff and s[k] >= tss:
            any_combined = True
            weight = (big - abs(r1[k] - r2[k])) * 1.0 / big
            m1 += f[k]
            m2 += s[k]
            w1 += f[k] * weight
            w2 += s[k] * weight
    if not any_combined:
        return 0.0, 0.0, 0.0, 0.0
    return m1 / tot_f, m2 / tot_s, w1 / tot_f, w2 / tot_s


@numba.njit(cache=True, error_model="numpy")
def _background_sign(f, s, thr_f, thr_s):
    """Sign of the Pearson r of the pixels below either threshold; NaN when undefined.

    The bisection only asks whether ``_costes_background_correlation`` is finite and
    non-negative, and the sign of r is the sign of the centred cross sum. One pass gets it
    from raw sums; only when that sum is too close to zero for its rounding error (the
    ``1e-9`` margin is ~10⁴ above the worst case for 10⁵ pixels) is it recomputed centred.
    """
    n = 0
    sf = ss = sfs = 0.0
    fmin = smin = np.inf
    fmax = smax = -np.inf
    for k in range(f.size):
        if f[k] < thr_f or s[k] < thr_s:
            n += 1
            sf += f[k]
            ss += s[k]
            sfs += f[k] * s[k]
            fmin, fmax = min(fmin, f[k]), max(fmax, f[k])
            smin, smax = min(smin, s[k]), max(smax, s[k])
    if n < 3 or fmax == fmin or smax == smin:
        return np.nan
    cross = sfs - sf * ss / n
    if abs(cross) > 1e-9 * (abs(sfs) + abs(sf * ss / n)):
        return cross
    mf, ms = sf / n, ss / n
    sxy = 0.0
    for k in range(f.size):
        if f[k] < thr_f or s[k] < thr_s:
            sxy += (f[k] - mf) * (s[k] - ms)
    return sxy


@numba.njit(cache=True, error_model="numpy")
def _costes_fit(f, s):
    """Orthogonal regression ``s = a f + b`` over pixels non-zero in either channel."""
    nz = 0
    for k in range(f.size):
        if f[k] > 0 or s[k] > 0:
            nz += 1
    fz, sz = np.empty(nz), np.empty(nz)
    j = 0
    for k in range(f.size):
        if f[k] > 0 or s[k] > 0:
            fz[j], sz[j] = f[k], s[k]
            j += 1
    if nz < 3 or fz.max() == fz.min() or sz.max() == sz.min():
        return np.nan, np.nan
    xvar, xmean = _var1(fz)
    yvar, ymean = _var1(sz)
    zvar, _ = _var1(fz + sz)
    covar = 0.5 * (zvar - (xvar + yvar))
    num = (yvar - xvar) + np.sqrt((yvar - xvar) * (yvar - xvar) + 4 * (covar * covar))
    if abs(covar) <= 8 * _EPS * max(xvar, yvar):
        return np.nan, np.nan
    a = num / (2 * covar)
    b = ymean - a * xmean
    if not (np.isfinite(a) and np.isfinite(b)):
        return np.nan, np.nan
    return a, b


@numba.njit(cache=True, error_model="numpy")
def _first_step(x, thr, rising, guess):
    """First step ``m`` with ``(x < thr[m]) == rising`` (``thr.size`` if none) for monotone
    ``thr``: ``guess`` (the step solved in real numbers) corrected by walking, so the step is
    exact for the same float thresholds; a non-finite guess falls back to bisection."""
    top = thr.size - 1
    if np.isfinite(guess):
        m = int(min(max(guess, 0.0), top + 1.0))
        while m > 0 and (x < thr[m - 1]) == rising:
            m -= 1
        while m <= top and (x < thr[m]) != rising:
            m += 1
        return m
    lo, hi = -1, top + 1                         # not yet `rising` at lo, `rising` at hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if (x < thr[mid]) == rising:
            hi = mid
        else:
            lo = mid
    return hi


@numba.njit(cache=True, error_model="numpy")
def _add(row, f, s):
    row[0] += 1
    row[1] += f
    row[2] += s
    row[3] += f * s
    row[4], row[5] = min(row[4], f), max(row[5], f)
    row[6], row[7] = min(row[6], s), max(row[7], s)


@numba.njit(cache=True, error_model="numpy")
def _merge(row, other):
    for i in range(4):
        row[i] += other[i]
    row[4], row[5] = min(row[4], other[4]), max(row[5], other[5])
    row[6], row[7] = min(row[6], other[6]), max(row[7], other[7])


@numba.njit(cache=True, error_model="numpy")
def _empty_rows(count):
    rows = np.zeros((count, 8))
    rows[:, 4] = rows[:, 6] = np.inf
    rows[:, 5] = rows[:, 7] = -np.inf
    return rows


@numba.njit(cache=True, error_model="numpy")
def _background_table(f, s, a, b, scale):
    """Sums of the background pixels (``f < t`` or ``s < a t + b``, ``t = m / scale``) at every
    grid step ``m = 0..scale`` at once, in two tables added only, never subtracted.

    ``f < t`` turns true at one step ``e`` and stays true. With ``a > 0`` so does the ``s``
    test, and a pixel is background from ``min(e, e_s)`` on: table ``grow`` holds, at row
    ``m``, the pixels that joined by ``m``. With ``a <= 0`` the ``s`` test is true up to a step
    ``x`` and false after, so the background at ``m`` is ``{e <= m}`` (in ``grow``) plus the
    disjoint ``{min(e, x) > m}`` (table ``stay``, summed from the top). Row layout:
    ``n, Σf, Σs, Σfs, min f, max f, min s, max s``.
    """
    top = int(scale)
    thr_f = np.arange(top + 1) / scale           # the expressions of _background_sign
    thr_s = a * thr_f + b
    grow, stay = _empty_rows(top + 2), _empty_rows(top + 2)
    for k in range(f.size):
        e = _first_step(f[k], thr_f, True, np.floor(f[k] * scale) + 1)
        cross = (s[k] - b) / a * scale           # where a t + b meets s, in steps
        if a > 0:
            e = min(e, _first_step(s[k], thr_s, True, np.floor(cross) + 1))
        else:
            c = min(e, _first_step(s[k], thr_s, False, np.ceil(cross)))
            if c > 0:
                _add(stay[c - 1], f[k], s[k])     # background while m < c
        if e <= top:
            _add(grow[e], f[k], s[k])
    for m in range(1, top + 1):
        _merge(grow[m], grow[m - 1])
    for m in range(top - 1, -1, -1):
        _merge(stay[m], stay[m + 1])
    for m in range(top + 1):
        _merge(grow[m], stay[m])
    return grow[: top + 1]


@numba.njit(cache=True, error_model="numpy")
def _tabled_sign(table, f, s, m, scale, a, b):
    """:func:`_background_sign` at grid step ``m`` from :func:`_background_table`.

    The sums are added in another order than a direct pass, but only the sign is used and it
    is taken from the raw sums only outside the same rounding margin; inside it the direct,
    centred pass decides, as there.
    """
    if m < 0 or m >= table.shape[0] or m != np.floor(m):
        thr_f = m / scale
        return _background_sign(f, s, thr_f, a * thr_f + b)
    row = table[int(m)]
    n, sf, ss, sfs = row[0], row[1], row[2], row[3]
    if n < 3 or row[5] == row[4] or row[7] == row[6]:
        return np.nan
    cross = sfs - sf * ss / n
    if abs(cross) > 1e-9 * (abs(sfs) + abs(sf * ss / n)):
        return cross
    thr_f = m / scale
    return _background_sign(f, s, thr_f, a * thr_f + b)


# above this many grid steps per object the table costs more than the passes it saves
_TABLE_MAX_STEPS = 4096


@numba.njit(cache=True, error_model="numpy")
def _costes(f, s, scale):
    """Costes M1, M2 of one object: cp_measure's "Faster" bisection and NaN rules."""
    if f.size < 3:
        return np.nan, np.nan
    a, b = _costes_fit(f, s)
    if np.isnan(a):
        return np.nan, np.nan
    tabled = scale <= _TABLE_MAX_STEPS
    table = _background_table(f, s, a, b, scale) if tabled else np.zeros((0, 8))
    left, right = 1.0, float(scale)
    mid = ((right - left) // (6 / 5)) + left
    lastmid, valid, found, iterations = 0.0, 0.0, False, 0
    while lastmid != mid:
        iterations += 1
        if iterations > 256:
            return np.nan, np.nan
        if tabled:
            cost = _tabled_sign(table, f, s, mid, scale, a, b)
        else:
            thr_f = mid / scale
            cost = _background_sign(f, s, thr_f, a * thr_f + b)
        if not np.isfinite(cost) or cost < 0:
            left = mid - 1
        else:
            right = mid + 1
            valid, found = mid, True
        lastmid = mid
        mid = ((right - left) // (6 / 5 if right - left > 6 else 2.0)) + left
    if not found:
        return np.nan, np.nan
    thr_f = (valid - 1) / scale
    thr_s = a * thr_f + b
    if not np.isfinite(_background_sign(f, s, thr_f, thr_s)):
        return np.nan, np.nan
    tot_f = tot_s = c1 = c2 = 0.0
    for k in range(f.size):
        if f[k] >= thr_f:
            tot_f += f[k]
        if s[k] >= thr_s:
            tot_s += s[k]
        if f[k] > thr_f and s[k] > thr_s:
            c1 += f[k]
            c2 += s[k]
    if tot_f <= 0 or tot_s <= 0:
        return np.nan, np.nan
    return c1 / tot_f, c2 / tot_s


@numba.njit(cache=True, error_model="numpy")
def _pair_kernel(first, second, rank1, rank2, offsets, thr, scale, costes):
    n = offsets.size - 1
    out = np.zeros((n, 8))
    for k in range(n):
        a, z = offsets[k], offsets[k + 1]
        f, s = first[a:z], second[a:z]
        if f.size == 0:
            out[k, 6] = out[k, 7] = np.nan
            continue
        out[k, 0], out[k, 1] = _pearson_slope(f, s)
        out[k, 2], out[k, 3], out[k, 4], out[k, 5] = _manders_rwc(f, s, rank1[a:z], rank2[a:z], thr)
        if costes:
            out[k, 6], out[k, 7] = _costes(f, s, scale)
    return out


KEYS = ("Correlation_Pearson", "Correlation_Slope", "Correlation_Manders_1",
        "Correlation_Manders_2", "Correlation_RWC_1", "Correlation_RWC_2",
        "Correlation_Costes_1", "Correlation_Costes_2")


def correlate_pairs(groups: ObjectPixels, image: np.ndarray, pairs: list[tuple[int, int]], *,
                    scale_max: int = 255, costes: bool = True) -> list[dict[str, np.ndarray]]:
    """Pearson, Slope, Manders, RWC and Costes of channel pairs, for every object.

    Parameters
    ----------
    groups : ObjectPixels
        Grouped pixels of the sanitised label image.
    image : np.ndarray
        ``(C, H, W)`` float image in [0, 1].
    pairs : list of (int, int)
        Channel index pairs ``(first, second)``; ``_1`` keys are first-channel measures.
    scale_max : int
        Maximum of the acquisition's integer scale (the grid of Costes' threshold search).
    costes : bool
        Compute Costes (the only costly part); its keys are left out when ``False``.

    Returns
    -------
    list of dict[str, np.ndarray]
        Per pair, cp_measure's keys (``Correlation_Pearson``, ``Correlation_Slope``,
        ``Correlation_Manders_1`` / ``_2``, ``Correlation_RWC_1`` / ``_2``,
        ``Correlation_Costes_1`` / ``_2``), one value per object.

    Raises
    ------
    ValueError
        When a pixel lies outside [0, 1] (Costes' grid would be meaningless), as cp_measure.
    """
    used = sorted({c for pair in pairs for c in pair})
    values = {c: groups.values(image[c]) for c in used}
    if costes and groups.index.size:
        for c in used:
            if values[c].min() < 0 or values[c].max() > 1:
                raise ValueError(f"Costes expects pixels in [0, 1]; channel {c} spans "
                                 f"[{values[c].min():g}, {values[c].max():g}]")
    ranks = {c: dense_ranks(values[c], groups.offsets) for c in used}
    results = []
    for i, j in pairs:
        out = _pair_kernel(values[i], values[j], ranks[i], ranks[j], groups.offsets,
                           float(THRESHOLD_PERCENT), float(scale_max), costes)
        results.append({key: out[:, k] for k, key in enumerate(KEYS[: 8 if costes else 6])})
    return results
