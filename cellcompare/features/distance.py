"""Exact Euclidean distance transform of small boxes, compiled (AreaShape radii, radial rings).

scipy's ``distance_transform_edt`` costs a Python call, a feature transform and a few
temporaries per object; cp_measure runs it once per object for the AreaShape radii and
centrosome once per colour for RadialDistribution. :func:`edt` is the two-pass
lower-envelope transform (Felzenszwalb & Huttenlocher): squared distances are integers, so
the values equal scipy's.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True)
def edt(m):
    """Distance of each non-zero pixel of ``m`` ``(h, w)`` to the nearest zero pixel of ``m``.

    Zero pixels get 0. A box without any zero pixel gets distances larger than the box
    (scipy's result is undefined there too).

    Examples
    --------
    >>> import numpy as np
    >>> from cellcompare.features.distance import edt
    >>> edt(np.array([[0, 1, 1, 1]], np.uint8)).tolist()
    [[0.0, 1.0, 2.0, 3.0]]
    """
    hp, wp = m.shape
    big = float(hp + wp) * 4.0
    g = np.empty((hp, wp))
    for c in range(wp):                          # pass 1: distance along each column
        d = big
        for r in range(hp):
            d = 0.0 if m[r, c] == 0 else d + 1.0
            g[r, c] = d
        d = big
        for r in range(hp - 1, -1, -1):
            d = 0.0 if m[r, c] == 0 else d + 1.0
            g[r, c] = min(g[r, c], d) ** 2
    out = np.zeros((hp, wp))
    v = np.empty(wp, np.int64)
    z = np.empty(wp + 1)
    for r in range(hp):                          # pass 2: lower envelope of parabolas per row
        k = 0
        v[0] = 0
        z[0], z[1] = -np.inf, np.inf
        for q in range(1, wp):
            s = ((g[r, q] + q * q) - (g[r, v[k]] + v[k] * v[k])) / (2.0 * (q - v[k]))
            while s <= z[k]:
                k -= 1
                s = ((g[r, q] + q * q) - (g[r, v[k]] + v[k] * v[k])) / (2.0 * (q - v[k]))
            k += 1
            v[k] = q
            z[k], z[k + 1] = s, np.inf
        k = 0
        for q in range(wp):
            while z[k + 1] < q:
                k += 1
            if m[r, q]:
                out[r, q] = np.sqrt((q - v[k]) ** 2 + g[r, v[k]])
    return out
