"""Costes' threshold search from one table of background sums equals the pass-per-step search."""

from __future__ import annotations

import numpy as np
import pytest

from cellcompare.features.correlation import (
    _background_sign,
    _background_table,
    _channel_stats,
    _costes_fit,
    _shared_fit,
    _table_sign,
)
from cellcompare.features.ranks import dense_ranks


def _tabled_sign(table, f, s, m, scale, a, b):
    """The background sign at grid step ``m`` read from the whole table."""
    return _table_sign(table, 0, table.shape[0] - 1, f, s, m, scale, a, b)


def _signs(f, s, a, b, scale, tabled):
    table = _background_table(f, s, a, b, scale)
    out = []
    for m in np.arange(-2.0, scale + 3):             # off-grid steps take the direct pass
        if tabled:
            v = _tabled_sign(table, f, s, m, scale, a, b)
        else:
            thr_f = m / scale
            v = _background_sign(f, s, thr_f, a * thr_f + b)
        out.append("nan" if not np.isfinite(v) else ("+" if v >= 0 else "-"))
    return out


@pytest.mark.parametrize("slope", [0.7, -0.6, 0.0, 3.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_table_gives_every_steps_sign_of_the_direct_pass(slope, seed):
    rng = np.random.default_rng(seed)
    f = np.round(rng.random(400), 2)                  # ties and exact grid values on purpose
    s = np.clip(slope * f + 0.3 + rng.normal(0, 0.1, f.size), 0, 1)
    s[:20] = 0.0
    a, b = _costes_fit(f, s)
    a = slope if slope == 0.0 else a                  # a flat fit: the s threshold is constant
    b = 0.35 if slope == 0.0 else b
    scale = 100.0
    assert _signs(f, s, a, b, scale, True) == _signs(f, s, a, b, scale, False)


def test_table_rows_hold_the_background_sums():
    rng = np.random.default_rng(3)
    f, s = rng.random(300), rng.random(300)
    a, b, scale = -0.8, 0.9, 50.0
    table = _background_table(f, s, a, b, scale)
    for m in (0, 7, 25, 50):
        thr_f = m / scale
        bg = (f < thr_f) | (s < a * thr_f + b)
        np.testing.assert_allclose(table[m], [bg.sum(), f[bg].sum(), s[bg].sum(),
                                              (f[bg] * s[bg]).sum()], rtol=1e-12)


def test_constant_background_is_undefined_from_the_table_as_from_a_pass():
    """The table keeps no minima or maxima: a flat background falls inside the rounding margin."""
    rng = np.random.default_rng(4)
    f = np.concatenate([np.full(10, 0.1), np.linspace(0.5, 1.0, 50)])
    s = 0.6 + 0.3 * rng.random(f.size)                # never below a t + b: background is f < t
    a, b, scale = 0.5, 0.0, 100.0
    table = _background_table(f, s, a, b, scale)
    assert np.isnan(_background_sign(f, s, 0.3, a * 0.3 + b))
    assert np.isnan(_tabled_sign(table, f, s, 30.0, scale, a, b))
    assert np.isfinite(_tabled_sign(table, f, s, 60.0, scale, a, b))


@pytest.mark.parametrize("zeros", [0, 1, 2])
def test_fit_from_channel_sums_equals_the_fit_pass(zeros):
    """Where a channel has no zero pixel the fit reuses its sums, to the bit; else it falls back."""
    rng = np.random.default_rng(zeros)
    x = rng.integers(1, 256, (2, 500)) / 255
    x[:zeros, :7] = 0.0                                # zeros in neither, one or both channels
    ranks = np.stack([dense_ranks(v, np.array([0, v.size])) for v in x])
    stats, level = np.empty((2, 6)), np.empty((2, x.shape[1]))
    for c in range(2):
        _channel_stats(x[c], ranks[c], 15.0, level[c], stats[c])
    sz = 0.0
    for k in range(x.shape[1]):
        sz += x[0, k] + x[1, k]
    assert _shared_fit(x[0], x[1], stats[0], stats[1], sz) == _costes_fit(x[0], x[1])
