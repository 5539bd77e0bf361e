"""RadialDistribution rings and wedges with the geometry computed once per object type.

cp_measure's ``get_radial_distribution`` recomputes, for every channel, everything that
depends only on the label image: the distance to the edge, each object's centre, the distance
propagated from it (one ``centrosome.propagate`` per colour) and the ring and wedge of every
pixel. Here :func:`radial_geometry` does that once (the propagation compiled, in one pass);
the per-channel work is a few ``bincount`` calls. The formulas are cp_measure's
(``scaled=True``, 4 bins), so the values agree to round-off; parity is tested to 1e-6
relative. The radial Zernikes are in :mod:`features.zernike`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np
from cp_measure.core.measureobjectintensitydistribution import (
    _maximum_position_of_labels,
)

from .distance import edt
from .grouping import object_boxes

BIN_COUNT = 4
_WEDGES = 8


@dataclass(frozen=True)
class RadialGeometry:
    """Per-pixel rings and wedges of a sanitised label image.

    Attributes
    ----------
    n : int
        Number of objects.
    flat : np.ndarray
        ``(G,)`` flat indices of the pixels reached from their object's centre.
    seg : np.ndarray
        ``(G,)`` object index (label − 1) of those pixels.
    ring : np.ndarray
        ``(G,)`` ring index ``0..BIN_COUNT`` (the last is the overflow).
    wedge : np.ndarray
        ``(G,)`` wedge index ``0..7`` around the centre.
    """

    n: int
    flat: np.ndarray
    seg: np.ndarray
    ring: np.ndarray
    wedge: np.ndarray


@numba.njit(cache=True)
def _propagate_within_labels(labels, seeds_i, seeds_j, boxes):
    """Path distance from each object's seed over its own pixels (8-connected, steps 1 and √2).

    The same distance as ``centrosome.propagate`` on a zero image with weight 1, which
    cp_measure runs once per colour of a colouring in which touching objects differ;
    restricting steps to pixels of the same label gives the same paths in one pass.

    Dijkstra with a bucket queue of width 1, object by object inside its box (``boxes``,
    :func:`features.grouping.object_boxes`): every step is at least 1 long, so a pixel taken
    from the lowest bucket can no longer be improved and pixels of one bucket may be taken in
    any order; steps are at most √2 < 2, so three cyclic buckets hold every pending pixel.
    Each pixel's distance is the minimum over the same candidate sums as a heap-ordered
    Dijkstra's, so the result is the same to the bit.
    """
    h, w = labels.shape
    dist = np.full((h, w), -1.0)
    done = np.zeros((h, w), np.bool_)
    diag = np.sqrt(2.0)
    cap = 8
    for k in range(boxes.shape[0]):       # a pixel is queued at most once per neighbour
        cap = max(cap, 8 * (boxes[k, 1] - boxes[k, 0]) * (boxes[k, 3] - boxes[k, 2]) + 8)
    queue = np.empty((3, cap), np.int64)
    top = np.zeros(3, np.int64)
    for k in range(seeds_i.size):
        r0, r1, c0, c1 = boxes[k, 0], boxes[k, 1], boxes[k, 2], boxes[k, 3]
        if r1 == r0:
            continue
        lab = labels[seeds_i[k], seeds_j[k]]
        dist[seeds_i[k], seeds_j[k]] = 0.0
        top[:] = 0
        queue[0, 0] = seeds_i[k] * w + seeds_j[k]
        top[0] = pending = 1
        bucket = 0
        while pending > 0:
            b = bucket % 3
            while top[b] > 0:
                top[b] -= 1
                pending -= 1
                p = queue[b, top[b]]
                i, j = p // w, p % w
                if done[i, j]:
                    continue
                done[i, j] = True
                d = dist[i, j]
                for di in range(-1, 2):
                    for dj in range(-1, 2):
                        ni, nj = i + di, j + dj
                        if (di == 0 and dj == 0) or ni < r0 or nj < c0 or ni >= r1 or nj >= c1:
                            continue
                        if labels[ni, nj] != lab or done[ni, nj]:
                            continue
                        nd = d + (diag if di != 0 and dj != 0 else 1.0)
                        if dist[ni, nj] < 0 or nd < dist[ni, nj]:
                            dist[ni, nj] = nd
                            nb = int(nd) % 3
                            queue[nb, top[nb]] = ni * w + nj
                            top[nb] += 1
                            pending += 1
            bucket += 1
    return dist


def _distance_to_edge(labels: np.ndarray, boxes: np.ndarray | None = None) -> np.ndarray:
    """Each object pixel's distance to the nearest pixel outside its object.

    Equal to ``centrosome.cpmorphology.distance_to_edge`` (one whole-image EDT per colour):
    the nearest pixel outside object A is never in a same-coloured object (a step from it
    towards the pixel would land in A, making the two objects touch), and it lies within
    one pixel of A's box, so an EDT of each object's box grown by one pixel is enough.

    An object filling the whole image has no pixel outside it. scipy's EDT of a mask without
    background (hence centrosome's, CellProfiler's and cp_measure's) then measures from the
    pixel above the top-left corner, ``(-1, 0)``: that distance is taken here too, so that
    RadialDistribution of such an object (``whole_object: true`` on a site filled by the
    foreground, cp_measure's ``full`` example mask) agrees with theirs.
    """
    if boxes is None:
        boxes = object_boxes(labels, int(labels.max()) if labels.size else 0)
    return _edge_distances(np.ascontiguousarray(labels), boxes)


@numba.njit(cache=True)
def _edge_distances(labels, boxes):
    h, w = labels.shape
    out = np.zeros((h, w))
    for k in range(boxes.shape[0]):
        if boxes[k, 1] == boxes[k, 0]:
            continue
        r0, r1 = max(boxes[k, 0] - 1, 0), min(boxes[k, 1] + 1, h)
        c0, c1 = max(boxes[k, 2] - 1, 0), min(boxes[k, 3] + 1, w)
        inside = np.zeros((r1 - r0, c1 - c0), np.uint8)
        for r in range(r0, r1):
            for c in range(c0, c1):
                if labels[r, c] == k + 1:
                    inside[r - r0, c - c0] = 1
        if inside.all():            # the object is the image: scipy's distance from (-1, 0)
            for r in range(r0, r1):
                for c in range(c0, c1):
                    out[r, c] = np.sqrt((r + 1.0) ** 2 + c * c)
            continue
        dist = edt(inside)
        for r in range(r0, r1):
            for c in range(c0, c1):
                if inside[r - r0, c - c0]:
                    out[r, c] = dist[r - r0, c - c0]
    return out


def radial_geometry(labels: np.ndarray, boxes: np.ndarray | None = None) -> RadialGeometry:
    """Rings and wedges of ``labels`` ``(H, W)`` (labels ``1..N``; ``boxes`` as
    :func:`features.grouping.object_boxes`, found when not given)."""
    n = int(labels.max()) if labels.size else 0
    boxes = object_boxes(labels, n) if boxes is None else boxes
    d_to_edge = _distance_to_edge(labels, boxes)
    ci, cj = _maximum_position_of_labels(d_to_edge, labels, n)
    d_centre = _propagate_within_labels(np.ascontiguousarray(labels, np.int64),
                                        ci.astype(np.int64), cj.astype(np.int64), boxes)
    flat = np.flatnonzero(d_centre.ravel() >= 0)
    seg = labels.ravel()[flat] - 1
    d_c, d_e = d_centre.ravel()[flat], d_to_edge.ravel()[flat]
    ring = np.minimum((d_c / (d_c + d_e + 0.001) * BIN_COUNT).astype(int), BIN_COUNT)
    rows, cols = np.divmod(flat, labels.shape[1])
    di, dj = rows - ci[seg].astype(float), cols - cj[seg].astype(float)
    wedge = (di > 0).astype(int) + (dj > 0) * 2 + (np.abs(di) > np.abs(dj)) * 4
    return RadialGeometry(n=n, flat=flat, seg=seg, ring=ring, wedge=wedge)


def _ring_cv(sums: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """``(n, rings)`` coefficient of variation of the wedge means, over wedges with pixels."""
    present = counts > 0
    k = present.sum(2)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.where(present, sums / np.where(present, counts, 1), 0.0)
        mean = means.sum(2) / k
        std = np.sqrt((np.where(present, means - mean[..., None], 0.0) ** 2).sum(2) / k)
        # numpy.ma (cp_measure) keeps the numerator where it masks a zero mean
        cv = np.where(mean == 0, std, std / np.where(mean == 0, 1.0, mean))
    cv[k == 0] = 0.0
    return cv


def radial_distribution(geom: RadialGeometry, pixels: np.ndarray) -> dict[str, np.ndarray]:
    """FracAtD, MeanFrac and RadialCV per ring of one channel ``(H, W)``.

    Returns cp_measure's keys (``RadialDistribution_FracAtD_1of4`` ...), one value per object.
    """
    values = np.ascontiguousarray(pixels, dtype=np.float64).ravel()[geom.flat]
    cell = (geom.seg * (BIN_COUNT + 1) + geom.ring) * _WEDGES + geom.wedge
    shape = (geom.n, BIN_COUNT + 1, _WEDGES)
    size = geom.n * (BIN_COUNT + 1) * _WEDGES
    sums = np.bincount(cell, weights=values, minlength=size).reshape(shape)
    counts = np.bincount(cell, minlength=size).reshape(shape)
    hist, number = sums.sum(2), counts.sum(2)
    with np.errstate(invalid="ignore", divide="ignore"):
        frac_at_d = hist / hist.sum(1)[:, None]
        frac_at_bin = number / number.sum(1)[:, None]
        mean_frac = frac_at_d / (frac_at_bin + np.finfo(float).eps)
    cv = _ring_cv(sums[:, :BIN_COUNT], counts[:, :BIN_COUNT])
    out = {}
    for ring in range(BIN_COUNT):
        tag = f"{ring + 1}of{BIN_COUNT}"
        out[f"RadialDistribution_FracAtD_{tag}"] = frac_at_d[:, ring]
        out[f"RadialDistribution_MeanFrac_{tag}"] = mean_frac[:, ring]
        out[f"RadialDistribution_RadialCV_{tag}"] = cv[:, ring]
    return out
