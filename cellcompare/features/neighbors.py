"""Neighbors family: CellProfiler's MeasureObjectNeighbors, objects against the same object type.

Definitions follow ``cellprofiler/modules/measureobjectneighbors.py`` (cp_measure has no
wrapper for it), for the case "neighbours are the same objects":

- ``NumberOfNeighbors_{scale}``: other objects that overlap the object dilated by a disk of
  radius ``d`` (``centrosome.cpmorphology.strel_disk(d)``); scale ``Adjacent`` is ``d = 1``
  (touching objects), scale ``{d}`` is CellProfiler's "Within a specified distance".
- ``PercentTouching_{scale}``: percent of the object's outline pixels (``centrosome.outline``,
  image-border pixels included) within ``strel_disk(d + 0.5)`` of another object's pixel.
- ``FirstClosestDistance``, ``SecondClosestDistance``: distances between centroids to the
  nearest and second-nearest other object; ``FirstClosestObjectNumber``: the nearest one's
  label; ``AngleBetweenNeighbors``: angle in degrees at the object's centroid between the
  vectors to those two. Ties are broken by label, as CellProfiler's stable ``lexsort``. With
  fewer than two (three) objects the first (second) values are 0, as CellProfiler.

CellProfiler repeats the centroid measurements under every scale's name although they do not
depend on the scale; we emit them once, under the ``Adjacent`` name. Whole-image pairwise
searches are compiled (numba) instead of CellProfiler's per-object dilation of patches; the
pair matrix holds ``N²`` booleans (4 MB at 2,000 objects). Both searches look only from
outline pixels: the pixel of object A nearest to a pixel ``q`` of another object is on A's
outline (from an inner pixel, the 4-neighbour one step towards ``q`` is in A and nearer), so
some outline pixel of A has ``q`` within the disk whenever any pixel of A has.
"""

from __future__ import annotations

import numba
import numpy as np
from centrosome.cpmorphology import strel_disk
from centrosome.outline import outline

ADJACENT = "Adjacent"


def _offsets(radius: float) -> np.ndarray:
    strel = strel_disk(radius)
    r = strel.shape[0] // 2
    di, dj = np.nonzero(strel)
    return np.stack([di - r, dj - r], axis=1).astype(np.int64)


@numba.njit(cache=True)
def _near_other_objects(labels, source, offsets, n, count_pixels):
    """Look from each pixel of ``source`` (labels, or outline labels) at ``offsets`` for another object.

    ``count_pixels`` False: ``(n, n)`` bool, object ``b`` lies at an offset from a pixel of
    ``a``. True: ``(n,)`` per object, its pixels with some other object at an offset.
    """
    h, w = labels.shape
    near = np.zeros((n, n) if not count_pixels else (0, 0), np.bool_)
    count = np.zeros(n)
    for i in range(h):
        for j in range(w):
            a = source[i, j]
            if a == 0:
                continue
            for k in range(offsets.shape[0]):
                ni, nj = i + offsets[k, 0], j + offsets[k, 1]
                if 0 <= ni < h and 0 <= nj < w:
                    b = labels[ni, nj]
                    if b != 0 and b != a:
                        if count_pixels:
                            count[a - 1] += 1
                            break
                        near[a - 1, b - 1] = True
    return near, count


def _closest(labels: np.ndarray, n: int) -> dict[str, np.ndarray]:
    count = np.bincount(labels.ravel(), minlength=n + 1)[1:].astype(float)
    rows, cols = np.indices(labels.shape)
    ci = np.bincount(labels.ravel(), rows.ravel(), minlength=n + 1)[1:] / count
    cj = np.bincount(labels.ravel(), cols.ravel(), minlength=n + 1)[1:] / count
    first_v = np.zeros((n, 2))
    second_v = np.zeros((n, 2))
    first_number = np.zeros(n)
    angle = np.zeros(n)
    if n > 1:
        dist = np.sqrt((ci[:, None] - ci[None, :]) ** 2 + (cj[:, None] - cj[None, :]) ** 2)
        order = np.argsort(dist, axis=1, kind="stable")    # column 0 is the object itself
        first = order[:, 1]
        first_number = first + 1.0
        first_v = np.stack([cj[first] - cj, ci[first] - ci], axis=1)
        if n > 2:
            second = order[:, 2]
            second_v = np.stack([cj[second] - cj, ci[second] - ci], axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                cos = (first_v * second_v).sum(1) / np.sqrt(
                    (first_v ** 2).sum(1) * (second_v ** 2).sum(1))
            angle = np.degrees(np.arccos(cos))
    return {
        f"Neighbors_FirstClosestObjectNumber_{ADJACENT}": first_number,
        f"Neighbors_FirstClosestDistance_{ADJACENT}": np.sqrt((first_v ** 2).sum(1)),
        f"Neighbors_SecondClosestDistance_{ADJACENT}": np.sqrt((second_v ** 2).sum(1)),
        f"Neighbors_AngleBetweenNeighbors_{ADJACENT}": angle,
    }


def measure_neighbors(labels: np.ndarray, *, distance: int = 5) -> dict[str, np.ndarray]:
    """Neighbour counts, percent touching and closest-object measures of each object.

    Parameters
    ----------
    labels : np.ndarray
        ``(H, W)`` sanitised labels ``1..N``.
    distance : int
        Radius (pixels) of CellProfiler's "Within a specified distance" scale, besides
        ``Adjacent``.

    Returns
    -------
    dict[str, np.ndarray]
        ``Neighbors_{Feature}_{scale}`` → one value per object ``1..N``;
        ``FirstClosestObjectNumber`` holds labels of ``labels`` (0 when there is none).

    Examples
    --------
    >>> import numpy as np
    >>> from cellcompare.features.neighbors import measure_neighbors
    >>> labels = np.zeros((10, 20), int); labels[:, :10] = 1; labels[:, 10:] = 2
    >>> measure_neighbors(labels)["Neighbors_PercentTouching_Adjacent"].round(2).tolist()
    [27.78, 27.78]
    """
    if distance < 1:
        raise ValueError(f"neighbor distance must be >= 1 pixel, got {distance}")
    labels = np.ascontiguousarray(labels, dtype=np.int64)
    n = int(labels.max()) if labels.size else 0
    edge = outline(labels)
    perimeter = np.bincount(edge.ravel(), minlength=n + 1)[1:].astype(float)
    out: dict[str, np.ndarray] = {}
    for scale, d in ((ADJACENT, 1), (str(distance), distance)):
        near, _ = _near_other_objects(labels, edge, _offsets(d), n, False)
        _, touching = _near_other_objects(labels, edge, _offsets(d + 0.5), n, True)
        out[f"Neighbors_NumberOfNeighbors_{scale}"] = near.sum(1).astype(float)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[f"Neighbors_PercentTouching_{scale}"] = touching * 100 / perimeter
    out.update(_closest(labels, n))
    return out
