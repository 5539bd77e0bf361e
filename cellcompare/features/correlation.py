"""Correlation family (Pearson, Slope, Manders, RWC, Costes): one compiled pass over the objects.

cp_measure walks every object four times per pair (once per measurement, each time slicing
its bounding box) and runs Costes' threshold bisection with ``scipy.stats.pearsonr`` at each
step. Here one numba kernel visits each object once (pixels grouped once, see
:mod:`features.grouping`) and, while its pixels are in cache, first measures what depends on
one channel only (mean and centred sum of squares, Manders' threshold and total, extremes,
distinct values and their steps on Costes' grid), then every channel pair from those, with
cp_measure's formulas (``measurecolocalization._pearson_pair``, ``_manders_pair``,
``_rwc_pair``, ``_costes_pair`` with the "Faster" bisection): same thresholds (``thr`` = 15 %
of the object's maximum), same dense ranks, same bisection steps and NaN rules, and every sum
that reaches a result added in the order of a direct pass. Dense ranks come from one hash
coding of each channel's values (:func:`features.ranks.dense_ranks`). The bisection reads
each step's background sums from one table per object and pair (:func:`_background_table`)
instead of a pass per step. Parity is tested to 1e-6 relative.
"""

from __future__ import annotations

import numba
import numpy as np

from .grouping import ObjectPixels
from .ranks import dense_ranks, rank_by_sorting

THRESHOLD_PERCENT = 15
_EPS = np.finfo(np.float64).eps
@numba.njit(cache=True, error_model="numpy")
def _levels(x, ranks, out):
    """Distinct values of ``x`` by dense rank into ``out``; returns how many there are."""
    count = 0
    for k in range(x.size):
        out[ranks[k]] = x[k]
        count = max(count, ranks[k] + 1)
    return count


@numba.njit(cache=True, error_model="numpy")
def _channel_stats(x, ranks, thr, level, out):
    """One channel of one object: ``out`` = mean, centred sum of squares, Manders' threshold,
    the sum of the pixels at or above it, minimum and maximum (NaN if any pixel is, as
    ``np.min``); ``level`` = the distinct values by dense rank. Returns how many there are."""
    total = 0.0
    low = high = x[0]
    for v in x:
        total += v
        if v < low or np.isnan(v):
            low = v
        if v > high or np.isnan(v):
            high = v
    mean, t = total / x.size, (thr / 100) * high
    sq = above = 0.0
    for v in x:
        sq += (v - mean) * (v - mean)
        if v >= t:
            above += v
    out[0], out[1], out[2], out[3], out[4], out[5] = mean, sq, t, above, low, high
    return _levels(x, ranks, level)


@numba.njit(cache=True, error_model="numpy")
def _pearson_manders_rwc(f, s, r1, r2, stats_f, stats_s, big, out):
    """Pearson r, Slope, Manders M1, M2 and RWC1, RWC2 of one object into ``out[:6]``, from
    the two channels' :func:`_channel_stats` and ``big`` = 1 + the largest rank of either.
    Returns ``Σ (f + s)`` for :func:`_shared_fit`."""
    mf, ms, tff, tss = stats_f[0], stats_s[0], stats_f[2], stats_s[2]
    sxy = m1 = m2 = w1 = w2 = sz = 0.0
    any_combined = False
    for k in range(f.size):
        sxy += (f[k] - mf) * (s[k] - ms)
        sz += f[k] + s[k]
        if f[k] >= tff and s[k] >= tss:
            any_combined = True
            weight = (big - abs(r1[k] - r2[k])) * 1.0 / big
            m1 += f[k]
            m2 += s[k]
            w1 += f[k] * weight
            w2 += s[k] * weight
    dof = f.size - 1.0
    cov, vf, vs = sxy / dof, stats_f[1] / dof, stats_s[1] / dof
    r = cov / np.sqrt(vf) / np.sqrt(vs)
    if r > 1.0:
        r = 1.0
    elif r < -1.0:
        r = -1.0
    out[0], out[1] = r, cov / vf
    if any_combined:
        tot_f, tot_s = stats_f[3], stats_s[3]
        out[2], out[3], out[4], out[5] = m1 / tot_f, m2 / tot_s, w1 / tot_f, w2 / tot_s
    return sz


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
    """Orthogonal regression ``s = a f + b`` over pixels non-zero in either channel.

    Sample variances of ``f``, ``s`` and ``f + s`` over those pixels, each a sum then a
    centred sum in pixel order, as a pass over the selected pixels would add them.
    """
    nz = 0
    sx = sy = sz = 0.0
    xmin = ymin = np.inf
    xmax = ymax = -np.inf
    for k in range(f.size):
        if f[k] > 0 or s[k] > 0:
            nz += 1
            sx += f[k]
            sy += s[k]
            sz += f[k] + s[k]
            xmin, xmax = min(xmin, f[k]), max(xmax, f[k])
            ymin, ymax = min(ymin, s[k]), max(ymax, s[k])
    if nz < 3 or xmax == xmin or ymax == ymin:
        return np.nan, np.nan
    xmean, ymean, zmean = sx / nz, sy / nz, sz / nz
    xacc = yacc = zacc = 0.0
    for k in range(f.size):
        if f[k] > 0 or s[k] > 0:
            xacc += (f[k] - xmean) * (f[k] - xmean)
            yacc += (s[k] - ymean) * (s[k] - ymean)
            zacc += (f[k] + s[k] - zmean) * (f[k] + s[k] - zmean)
    return _orthogonal_line(nz, xmean, ymean, xacc, yacc, zacc)


@numba.njit(cache=True, error_model="numpy")
def _shared_fit(f, s, stats_f, stats_s, sz):
    """:func:`_costes_fit` from the channels' :func:`_channel_stats` and ``sz = Σ (f + s)``.

    Where one channel has no zero pixel every pixel is selected, so the channels' sums and
    centred sums are the fit's, added in the same order; only ``f + s`` takes a pass.
    """
    if not (stats_f[4] > 0 or stats_s[4] > 0):
        return _costes_fit(f, s)
    n = f.size
    if n < 3 or stats_f[5] == stats_f[4] or stats_s[5] == stats_s[4]:
        return np.nan, np.nan
    zmean = sz / n
    zacc = 0.0
    for k in range(n):
        zacc += (f[k] + s[k] - zmean) * (f[k] + s[k] - zmean)
    return _orthogonal_line(n, stats_f[0], stats_s[0], stats_f[1], stats_s[1], zacc)


@numba.njit(cache=True, error_model="numpy")
def _orthogonal_line(nz, xmean, ymean, xacc, yacc, zacc):
    """Slope and intercept of the orthogonal regression from the means and centred sums of
    squares of ``x``, ``y`` and ``x + y`` over ``nz`` pixels; NaN where undefined."""
    xvar, yvar, zvar = xacc / (nz - 1), yacc / (nz - 1), zacc / (nz - 1)
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
def _level_steps(levels, thr, rising, guess, out):
    """:func:`_first_step` of each sorted distinct value in ``levels``, ``guess`` for the first
    and each next one walked from the last (exact from any start; short, the steps being
    monotone). A pixel's steps depend on its value only, so they are found per value."""
    for r in range(levels.size):
        out[r] = _first_step(levels[r], thr, rising, guess)
        guess = out[r]


@numba.njit(cache=True, error_model="numpy")
def _fit_steps(level_s, a, b, thr_f, scale, thr_s, out):
    """Steps of ``s``'s distinct values ``level_s`` against ``thr_s`` = ``a t + b`` (filled
    here): the first step below it when ``a > 0``, else the first step not below it."""
    for m in range(thr_f.size):
        thr_s[m] = a * thr_f[m] + b              # the expressions of _background_sign
    cross = (level_s[0] - b) / a * scale         # where a t + b meets s, in steps
    _level_steps(level_s, thr_s, a > 0, np.floor(cross) + 1 if a > 0 else np.ceil(cross), out)


@numba.njit(cache=True, error_model="numpy")
def _add(row, f, s):
    row[0] += 1
    row[1] += f
    row[2] += s
    row[3] += f * s


@numba.njit(cache=True, error_model="numpy")
def _merge(row, other):
    for i in range(4):
        row[i] += other[i]


@numba.njit(cache=True, error_model="numpy")
def _running_sums(rows, step):
    """Each row plus all rows before it (``step`` 1) or after it (``step`` -1), the totals
    carried in registers rather than read back from the row just written."""
    n = sf = ss = sfs = 0.0
    start, stop = (0, rows.shape[0]) if step > 0 else (rows.shape[0] - 1, -1)
    for m in range(start, stop, step):
        n += rows[m, 0]
        sf += rows[m, 1]
        ss += rows[m, 2]
        sfs += rows[m, 3]
        rows[m, 0], rows[m, 1], rows[m, 2], rows[m, 3] = n, sf, ss, sfs


@numba.njit(cache=True, error_model="numpy")
def _fill_table(grow, stay, f, s, rank_f, rank_s, step_f, step_s, a):
    """Fill the rows of ``grow`` that :func:`_background_table` describes and return the
    range ``lo, hi`` written; rows below ``lo`` equal row ``lo``, rows above ``hi`` row ``hi``.

    ``rank_f``, ``rank_s`` are the pixels' dense ranks, ``step_f`` and ``step_s`` the steps of
    the distinct values (:func:`_level_steps`, :func:`_fit_steps`); ``stay`` is scratch of
    ``grow``'s shape. Only rows between the smallest and largest step at which a pixel can
    join (or, with ``a <= 0``, leave) the background are touched.
    """
    top = grow.shape[0] - 1
    f_last = step_f.max()
    lo = min(step_f.min(), step_s.min()) - 1     # no pixel joins or leaves at or below lo
    hi = min(f_last, step_s.max())
    if a <= 0:                                   # joins `grow` at e <= f_last
        hi = max(hi, min(f_last, top))
    lo = max(min(lo, top), 0)
    hi = max(min(hi, top), lo)
    grow[lo:hi + 1] = 0.0
    if a > 0:
        for k in range(f.size):
            e = min(step_f[rank_f[k]], step_s[rank_s[k]])
            if e <= top:
                _add(grow[e], f[k], s[k])
        _running_sums(grow[lo:hi + 1], 1)
        return lo, hi
    stay[lo:hi + 1] = 0.0
    for k in range(f.size):
        e = step_f[rank_f[k]]
        c = min(e, step_s[rank_s[k]])
        if c > 0:
            _add(stay[c - 1], f[k], s[k])         # background while m < c
        if e <= top:
            _add(grow[e], f[k], s[k])
    _running_sums(grow[lo:hi + 1], 1)
    _running_sums(stay[lo:hi + 1], -1)
    for m in range(lo, hi + 1):
        _merge(grow[m], stay[m])
    return lo, hi


@numba.njit(cache=True, error_model="numpy")
def _background_table(f, s, a, b, scale):
    """Sums of the background pixels (``f < t`` or ``s < a t + b``, ``t = m / scale``) at every
    grid step ``m = 0..scale`` at once, in two tables added only, never subtracted.

    ``f < t`` turns true at one step ``e`` and stays true. With ``a > 0`` so does the ``s``
    test, and a pixel is background from ``min(e, e_s)`` on: table ``grow`` holds, at row
    ``m``, the pixels that joined by ``m``. With ``a <= 0`` the ``s`` test is true up to a step
    ``x`` and false after, so the background at ``m`` is ``{e <= m}`` (in ``grow``) plus the
    disjoint ``{min(e, x) > m}`` (table ``stay``, summed from the top). Row layout:
    ``n, Σf, Σs, Σfs``.
    """
    top = int(scale)
    thr_f = np.arange(top + 1) / scale
    rank_f, rank_s = np.empty(f.size, np.int64), np.empty(s.size, np.int64)
    rank_by_sorting(f, rank_f)
    rank_by_sorting(s, rank_s)
    level_f, level_s = np.empty(f.size), np.empty(s.size)
    count_f, count_s = _levels(f, rank_f, level_f), _levels(s, rank_s, level_s)
    step_f, step_s = np.empty(count_f, np.int64), np.empty(count_s, np.int64)
    _level_steps(level_f[:count_f], thr_f, True, np.floor(level_f[0] * scale) + 1, step_f)
    _fit_steps(level_s[:count_s], a, b, thr_f, scale, np.empty(top + 1), step_s)
    grow, stay = np.empty((top + 1, 4)), np.empty((top + 1, 4))
    lo, hi = _fill_table(grow, stay, f, s, rank_f, rank_s, step_f, step_s, a)
    for m in range(top + 1):                     # the rows _fill_table leaves implicit
        if m < lo or m > hi:
            grow[m] = grow[min(max(m, lo), hi)]
    return grow


@numba.njit(cache=True, error_model="numpy")
def _table_sign(table, lo, hi, f, s, m, scale, a, b):
    """:func:`_background_sign` at grid step ``m`` from rows ``lo..hi`` of
    :func:`_fill_table` (rows below equal row ``lo``, rows above row ``hi``).

    The sums are added in another order than a direct pass, but only the sign is used and it
    is taken from the raw sums only outside the same rounding margin; inside it the direct,
    centred pass decides, as there. A background whose ``f`` (or ``s``) is constant, where
    the direct pass answers NaN, has a cross sum of zero up to rounding, so it always falls
    inside the margin: the table needs no minima or maxima.
    """
    if m < 0 or m >= table.shape[0] or m != np.floor(m):
        thr_f = m / scale
        return _background_sign(f, s, thr_f, a * thr_f + b)
    row = table[min(max(int(m), lo), hi)]
    n, sf, ss, sfs = row[0], row[1], row[2], row[3]
    if n < 3:
        return np.nan
    cross = sfs - sf * ss / n
    if abs(cross) > 1e-9 * (abs(sfs) + abs(sf * ss / n)):
        return cross
    thr_f = m / scale
    return _background_sign(f, s, thr_f, a * thr_f + b)


# above this many grid steps per object the table costs more than the passes it saves
_TABLE_MAX_STEPS = 4096


@numba.njit(cache=True, error_model="numpy")
def _costes(f, s, scale, a, b, table, lo, hi):
    """Costes M1, M2 of one object from its fit ``s = a f + b``: cp_measure's "Faster"
    bisection and NaN rules, each step's sign read from rows ``lo..hi`` of ``table``
    (:func:`_fill_table`) when it has rows, else from a pass over the pixels."""
    tabled = table.shape[0] > 0
    left, right = 1.0, float(scale)
    mid = ((right - left) // (6 / 5)) + left
    lastmid, valid, found, iterations = 0.0, 0.0, False, 0
    while lastmid != mid:
        iterations += 1
        if iterations > 256:
            return np.nan, np.nan
        thr_f = mid / scale
        if tabled:
            cost = _table_sign(table, lo, hi, f, s, mid, scale, a, b)
        else:
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
    # the table answers NaN exactly where the direct pass does
    sign = (_table_sign(table, lo, hi, f, s, valid - 1, scale, a, b) if tabled
            else _background_sign(f, s, thr_f, thr_s))
    if not np.isfinite(sign):
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
def _correlation_kernel(values, ranks, offsets, pairs, thr, scale, costes):
    """``(pairs, 8, objects)`` values of :data:`KEYS` for channel rows ``pairs`` of
    ``values`` / ``ranks`` ``(channels, P)``, object by object."""
    n_ch, n_obj, n_pairs = values.shape[0], offsets.size - 1, pairs.shape[0]
    out = np.zeros((n_pairs, 8, n_obj))
    tabled = costes and scale <= _TABLE_MAX_STEPS
    top = int(scale) if tabled else -1
    thr_f, thr_s = np.arange(top + 1) / scale, np.empty(top + 1)
    grow, stay = np.empty((top + 1, 4)), np.empty((top + 1, 4))
    largest = np.max(np.diff(offsets)) if n_obj else 0
    # per channel of the current object: its stats, distinct values and their grid steps
    stats, count = np.empty((n_ch, 6)), np.empty(n_ch, np.int64)
    level, step = np.empty((n_ch, largest)), np.empty((n_ch, largest), np.int64)
    step_s = np.empty(largest, np.int64)
    for k in range(n_obj):
        a, z = offsets[k], offsets[k + 1]
        if z == a:
            out[:, 6, k] = out[:, 7, k] = np.nan
            continue
        for c in range(n_ch):
            count[c] = _channel_stats(values[c, a:z], ranks[c, a:z], thr, level[c], stats[c])
            if tabled:
                _level_steps(level[c, :count[c]], thr_f, True,
                             np.floor(level[c, 0] * scale) + 1, step[c])
        for p in range(n_pairs):
            i, j = pairs[p, 0], pairs[p, 1]
            f, s, rank_f, rank_s = values[i, a:z], values[j, a:z], ranks[i, a:z], ranks[j, a:z]
            sz = _pearson_manders_rwc(f, s, rank_f, rank_s, stats[i], stats[j],
                                      max(count[i], count[j]), out[p, :, k])
            if not costes or z - a < 3:
                out[p, 6, k] = out[p, 7, k] = np.nan
                continue
            fa, fb = _shared_fit(f, s, stats[i], stats[j], sz)
            if np.isnan(fa):
                out[p, 6, k] = out[p, 7, k] = np.nan
                continue
            lo = hi = 0
            if tabled:
                _fit_steps(level[j, :count[j]], fa, fb, thr_f, scale, thr_s, step_s)
                lo, hi = _fill_table(grow, stay, f, s, rank_f, rank_s, step[i, :count[i]],
                                     step_s[:count[j]], fa)
            out[p, 6, k], out[p, 7, k] = _costes(f, s, scale, fa, fb, grow, lo, hi)
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
    row = {c: r for r, c in enumerate(used)}
    values = np.empty((len(used), groups.index.size))
    for c in used:
        values[row[c]] = groups.values(image[c])
    if costes and groups.index.size:
        for c in used:
            low, high = values[row[c]].min(), values[row[c]].max()
            if low < 0 or high > 1:
                raise ValueError(f"Costes expects pixels in [0, 1]; channel {c} spans "
                                 f"[{low:g}, {high:g}]")
    ranks = np.empty(values.shape, np.int64)
    for r in range(len(used)):
        ranks[r] = dense_ranks(values[r], groups.offsets)
    rows = np.array([(row[i], row[j]) for i, j in pairs], np.int64).reshape(-1, 2)
    out = _correlation_kernel(values, ranks, groups.offsets, rows, float(THRESHOLD_PERCENT),
                              float(scale_max), costes)
    return [dict(zip(KEYS[: 8 if costes else 6], out[p])) for p in range(len(pairs))]
