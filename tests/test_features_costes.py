"""Costes' threshold search from one table of background sums equals the pass-per-step search."""

from __future__ import annotations

import numpy as np
import pytest

from cellcompare.features.correlation import (
    _background_sign,
    _background_table,
    _costes_fit,
    _tabled_sign,
)


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
        np.testing.assert_allclose(table[m, :4], [bg.sum(), f[bg].sum(), s[bg].sum(),
                                                  (f[bg] * s[bg]).sum()], rtol=1e-12)
        assert table[m, 4] == f[bg].min() and table[m, 7] == s[bg].max()
