"""AreaShape without a per-object ``regionprops`` call: one compiled pass over the object boxes.

cp_measure's ``get_sizeshape`` asks ``skimage.measure.regionprops_table`` for the area, box,
centroid, Euler number, perimeters, filled and convex areas, then runs one distance transform
per object for the radii. Each of those is a small array program per object in Python. Here one
compiled loop walks each object's box once and applies the same definitions:

- perimeter: skimage's ``perimeter(image, 4)`` (4-connected border pixels, weights looked up
  from the 3×3 code of border neighbours);
- ``PerimeterCrofton`` and ``EulerNumber``: skimage's 2×2-configuration histograms over the
  zero-padded box (4 directions; 8-connectivity coefficients);
- ``FilledArea``: ``binary_fill_holes`` with a 3×3 structure = background not 8-connected to
  the outside of the box is filled;
- ``ConvexArea``: skimage's ``convex_hull_image``: the hull of the pixel-edge midpoints
  (centre ± 0.5 along each axis), then the grid points inside it or on its boundary. The hull
  is built on doubled integer coordinates, so every test is exact;
- the radii: the exact Euclidean distance of each pixel to the nearest pixel outside its object
  (scipy's ``distance_transform_edt`` of the box padded by one; :func:`features.distance.edt`).

Moment-derived values (axes, eccentricity, orientation, moments, Hu, inertia) come from
cp_measure's own batched moment functions, called on groups of similar box size.
"""

from __future__ import annotations

import numba
import numpy as np
from cp_measure.primitives._moments import (
    axes_eccentricity_orientation,
    inertia_2d,
    moment_feature_dict,
    spatial_moments_2d,
)

from .distance import edt
from .grouping import object_boxes

_SQRT2 = np.sqrt(2.0)
_PERIMETER_WEIGHTS = np.zeros(50)
_PERIMETER_WEIGHTS[[5, 7, 15, 17, 25, 27]] = 1.0
_PERIMETER_WEIGHTS[[21, 33]] = _SQRT2
_PERIMETER_WEIGHTS[[13, 23]] = (1 + _SQRT2) / 2
_EULER8 = np.array([0, 0, 0, 0, 0, 0, -1, 0, 1, 0, 0, 0, 0, 0, -1, 0], np.float64)
_Q = np.pi / (4 * _SQRT2)
_CROFTON4 = np.array([0, np.pi / 4 * (1 + 1 / _SQRT2), _Q, np.pi / (2 * _SQRT2), 0,
                      np.pi / 4 * (1 + 1 / _SQRT2), 0, _Q, np.pi / 4, np.pi / 2, _Q, _Q,
                      np.pi / 4, np.pi / 2, 0, 0])
# columns of the per-object scalar table filled by _box_kernel
_AREA, _SUM_R, _SUM_C, _PERIM, _CROFTON, _EULER, _FILLED, _CONVEX, _RMAX, _RMEAN, _RMED = range(11)


@numba.njit(cache=True)
def _cross(o0, o1, a0, a1, b0, b1):
    return (a0 - o0) * (b1 - o1) - (a1 - o1) * (b0 - o0)


@numba.njit(cache=True)
def _convex_area(m):
    """Grid points of ``m`` ``(h + 2, w + 2)``, zero border, inside its pixel diamonds' hull."""
    h, w = m.shape[0] - 2, m.shape[1] - 2
    pts = np.empty((8 * h, 2), np.int64)
    k = 0
    for r in range(h):
        lo, hi = -1, -1
        for c in range(w):
            if m[r + 1, c + 1]:
                if lo < 0:
                    lo = c
                hi = c
        if lo < 0:
            continue
        for c in (lo, hi):                      # doubled coordinates of the 4 edge midpoints
            pts[k, 0], pts[k, 1] = 2 * r - 1, 2 * c
            pts[k + 1, 0], pts[k + 1, 1] = 2 * r + 1, 2 * c
            pts[k + 2, 0], pts[k + 2, 1] = 2 * r, 2 * c - 1
            pts[k + 3, 0], pts[k + 3, 1] = 2 * r, 2 * c + 1
            k += 4
    pts = pts[:k]
    order = np.argsort(pts[:, 0] * (4 * w + 8) + pts[:, 1])
    pts = pts[order]
    hull = np.empty((2 * k + 1, 2), np.int64)   # Andrew's monotone chain, collinear points dropped
    t = 0
    for i in range(k):
        while t >= 2 and _cross(hull[t - 2, 0], hull[t - 2, 1], hull[t - 1, 0], hull[t - 1, 1],
                                pts[i, 0], pts[i, 1]) <= 0:
            t -= 1
        hull[t, 0], hull[t, 1] = pts[i, 0], pts[i, 1]
        t += 1
    lower = t + 1
    for i in range(k - 2, -1, -1):
        while t >= lower and _cross(hull[t - 2, 0], hull[t - 2, 1], hull[t - 1, 0], hull[t - 1, 1],
                                    pts[i, 0], pts[i, 1]) <= 0:
            t -= 1
        hull[t, 0], hull[t, 1] = pts[i, 0], pts[i, 1]
        t += 1
    nv = t - 1                                  # hull[nv] repeats hull[0]
    count = 0
    for r in range(h):
        lo, hi = w, -1
        for c in range(w):                      # a convex region meets a row in one run
            if _inside(hull, nv, 2 * r, 2 * c):
                lo = c
                break
        if lo == w:
            continue
        for c in range(w - 1, lo - 1, -1):
            if _inside(hull, nv, 2 * r, 2 * c):
                hi = c
                break
        count += hi - lo + 1
    return count


@numba.njit(cache=True)
def _inside(hull, nv, p0, p1):
    for i in range(nv):
        if _cross(hull[i, 0], hull[i, 1], hull[i + 1, 0], hull[i + 1, 1], p0, p1) < 0:
            return False
    return True


@numba.njit(cache=True)
def _filled_area(m):
    """Pixels of the box not reached from its zero border through 8-connected background."""
    hp, wp = m.shape
    seen = np.zeros((hp, wp), np.uint8)
    stack = np.empty(hp * wp, np.int64)
    top = 0
    for r in range(hp):
        for c in range(wp):
            if (r == 0 or c == 0 or r == hp - 1 or c == wp - 1) and m[r, c] == 0:
                seen[r, c] = 1
                stack[top] = r * wp + c
                top += 1
    reached = top
    while top > 0:
        top -= 1
        r, c = stack[top] // wp, stack[top] % wp
        for dr in range(-1, 2):
            for dc in range(-1, 2):
                rr, cc = r + dr, c + dc
                if 0 <= rr < hp and 0 <= cc < wp and seen[rr, cc] == 0 and m[rr, cc] == 0:
                    seen[rr, cc] = 1
                    stack[top] = rr * wp + cc
                    top += 1
                    reached += 1
    return hp * wp - reached


@numba.njit(cache=True)
def _perimeter(m, weights):
    """skimage's ``perimeter(image, 4)`` of ``m`` (zero border): weighted border-pixel codes."""
    hp, wp = m.shape
    border = np.zeros((hp, wp), np.uint8)
    for r in range(1, hp - 1):
        for c in range(1, wp - 1):
            if m[r, c] and (m[r - 1, c] == 0 or m[r + 1, c] == 0 or m[r, c - 1] == 0
                            or m[r, c + 1] == 0):
                border[r, c] = 1
    total = 0.0
    for r in range(1, hp - 1):
        for c in range(1, wp - 1):
            if border[r, c]:
                code = 1 + 2 * (border[r - 1, c] + border[r + 1, c] + border[r, c - 1]
                                + border[r, c + 1]) \
                    + 10 * (border[r - 1, c - 1] + border[r - 1, c + 1] + border[r + 1, c - 1]
                            + border[r + 1, c + 1])
                total += weights[code]
    return total


@numba.njit(cache=True)
def _window_histogram(m):
    """Counts of the 16 configurations of every 2×2 window meeting ``m`` (zero border)."""
    hp, wp = m.shape
    hist = np.zeros(16, np.int64)
    for r in range(1, hp):
        for c in range(1, wp):
            hist[m[r, c] + 2 * m[r - 1, c] + 4 * m[r, c - 1] + 8 * m[r - 1, c - 1]] += 1
    return hist


@numba.njit(cache=True)
def _box_kernel(labels, boxes, perim_w, euler_w, crofton_w):
    n = boxes.shape[0]
    res = np.zeros((n, 11))
    for k in range(n):
        r0, r1, c0, c1 = boxes[k, 0], boxes[k, 1], boxes[k, 2], boxes[k, 3]
        h, w = r1 - r0, c1 - c0
        m = np.zeros((h + 2, w + 2), np.uint8)
        area = 0
        sr = 0.0
        sc = 0.0
        for r in range(h):
            for c in range(w):
                if labels[r0 + r, c0 + c] == k + 1:
                    m[r + 1, c + 1] = 1
                    area += 1
                    sr += r0 + r
                    sc += c0 + c
        perim = _perimeter(m, perim_w)
        hist = _window_histogram(m)
        euler = 0.0
        crofton = 0.0
        for i in range(16):
            euler += euler_w[i] * hist[i]
            crofton += crofton_w[i] * hist[i]
        dist = edt(m)
        radii = np.empty(area)
        i = 0
        for r in range(1, h + 1):
            for c in range(1, w + 1):
                if m[r, c]:
                    radii[i] = dist[r, c]
                    i += 1
        res[k, _AREA] = area
        res[k, _SUM_R] = sr
        res[k, _SUM_C] = sc
        res[k, _PERIM] = perim
        res[k, _CROFTON] = crofton
        res[k, _EULER] = euler
        res[k, _FILLED] = _filled_area(m)
        res[k, _CONVEX] = _convex_area(m)
        res[k, _RMAX] = radii.max()
        res[k, _RMEAN] = radii.mean()
        res[k, _RMED] = np.median(radii)
    return res


def box_size_groups(masks: np.ndarray, n: int, *, spread: float = 4.0,
                    floor: int = 32 * 32, boxes: np.ndarray | None = None) -> list[np.ndarray]:
    """Labels ``1..n`` grouped so that no box is ``spread``× larger than its group's smallest.

    cp_measure's ``spatial_moments_2d`` pads every object's box to the largest one; one
    image-spanning cell beside a hundred small ones then costs ``100 × H × W`` floats.
    ``boxes`` (:func:`features.grouping.object_boxes`) are found when not given.
    """
    boxes = object_boxes(masks, n) if boxes is None else boxes
    area = (boxes[:, 1] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 2])
    order = np.argsort(area, kind="stable")
    groups, start = [], 0
    for k in range(1, n + 1):
        if k == n or area[order[k]] > spread * max(area[order[start]], floor):
            groups.append(np.sort(order[start:k]) + 1)
            start = k
    return groups


def _moments(masks: np.ndarray, n: int, boxes: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """cp_measure's moment-derived AreaShape values, per group of similar box size.

    Moments depend on the object's own pixels only (in its box's frame), so a subset of the
    objects relabelled ``1..k`` gives the same values; grouping bounds the padding to the
    largest box of each group.
    """
    out: dict[str, np.ndarray] = {}
    for labels in box_size_groups(masks, n, boxes=boxes):
        lut = np.zeros(n + 1, masks.dtype)
        lut[labels] = np.arange(1, labels.size + 1)
        raw, central, normalized, hu = spatial_moments_2d(lut[masks])
        inertia = inertia_2d(central)
        major, minor, ecc, orient = axes_eccentricity_orientation(inertia)
        group = {"MajorAxisLength": major, "MinorAxisLength": minor, "Eccentricity": ecc,
                 "Orientation": orient * (180 / np.pi)}
        group |= moment_feature_dict(raw, central, normalized, hu, inertia)
        for key, values in group.items():
            out.setdefault(key, np.full(n, np.nan))[labels - 1] = values
    return out


def area_shape(masks: np.ndarray, boxes: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """cp_measure's 2D AreaShape of a sanitised label image ``(H, W)`` (labels ``1..N``).

    Parameters
    ----------
    masks : np.ndarray
        ``(H, W)`` integer labels, consecutive from 1.
    boxes : np.ndarray, optional
        :func:`features.grouping.object_boxes` of ``masks`` (found when not given).

    Returns
    -------
    dict[str, np.ndarray]
        The keys of ``cp_measure``'s ``get_sizeshape`` in its order, one float64 per object.

    Examples
    --------
    >>> import numpy as np
    >>> from cellcompare.features.shape import area_shape
    >>> labels = np.zeros((7, 7), int); labels[1:6, 1:6] = 1
    >>> area_shape(labels)["Area"], area_shape(labels)["Perimeter"]
    (array([25.]), array([16.]))
    """
    n = int(masks.max()) if masks.size else 0
    if n == 0:
        return {}
    boxes = object_boxes(masks, n) if boxes is None else boxes
    missing = np.flatnonzero(boxes[:, 1] == boxes[:, 0]) + 1
    if missing.size:
        raise ValueError(f"labels must run 1..{n} without gaps (sanitise them first); "
                         f"label {missing[0]} is missing ({missing.size} in all)")
    res = _box_kernel(np.ascontiguousarray(masks), boxes, _PERIMETER_WEIGHTS, _EULER8, _CROFTON4)
    area, perim = res[:, _AREA], res[:, _PERIM]
    bbox_area = ((boxes[:, 1] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 2])).astype(np.float64)
    moments = _moments(masks, n, boxes)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = {
            "Area": area, "BoundingBoxArea": bbox_area, "ConvexArea": res[:, _CONVEX],
            "EquivalentDiameter": np.sqrt(4 * area / np.pi), "Perimeter": perim,
            **{key: moments.pop(key) for key in ("MajorAxisLength", "MinorAxisLength",
                                                 "Eccentricity", "Orientation")},
            "Center_X": res[:, _SUM_C] / area, "Center_Y": res[:, _SUM_R] / area,
            "BoundingBoxMinimum_X": boxes[:, 2].astype(np.float64),
            "BoundingBoxMaximum_X": boxes[:, 3].astype(np.float64),
            "BoundingBoxMinimum_Y": boxes[:, 0].astype(np.float64),
            "BoundingBoxMaximum_Y": boxes[:, 1].astype(np.float64),
            "FormFactor": 4.0 * np.pi * area / perim ** 2, "Extent": area / bbox_area,
            "Solidity": area / res[:, _CONVEX],
            "Compactness": perim ** 2 / np.maximum(4.0 * np.pi * area, 1),
            "EulerNumber": res[:, _EULER], "MaximumRadius": res[:, _RMAX],
            "MeanRadius": res[:, _RMEAN], "MedianRadius": res[:, _RMED],
            "FilledArea": res[:, _FILLED],
        }
    out |= moments
    out["PerimeterCrofton"] = res[:, _CROFTON]
    return out
