"""Pixels of a label image grouped by object, computed once per object type.

Every per-object kernel (intensity, correlation, texture) walks an object's pixels. cp_measure
finds them again for every channel and every measurement (``find_objects`` + a boolean mask
per object); we sort the foreground once and hand the kernels contiguous runs. Within a run
pixels keep C order, the order cp_measure's boolean indexing gives, so sums add in the same
order.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import scipy.ndimage
from centrosome.cpmorphology import convex_hull


@dataclass(frozen=True)
class ObjectPixels:
    """Foreground pixels of a sanitised label image ``1..N``, grouped by label.

    Attributes
    ----------
    index : np.ndarray
        ``(P,)`` flat (C-order) indices of the foreground pixels, object 1's first.
    offsets : np.ndarray
        ``(N + 1,)``; object ``k`` (label ``k + 1``) owns ``index[offsets[k]:offsets[k + 1]]``.
    shape : tuple of int
        Shape ``(H, W)`` of the label image.
    """

    index: np.ndarray
    offsets: np.ndarray
    shape: tuple[int, int]

    @property
    def count(self) -> int:
        """Number of objects ``N``."""
        return len(self.offsets) - 1

    @property
    def sizes(self) -> np.ndarray:
        """``(N,)`` pixel count of each object."""
        return np.diff(self.offsets)

    def values(self, image: np.ndarray) -> np.ndarray:
        """``(P,)`` float64 values of ``image`` ``(H, W)`` at the grouped pixels."""
        return np.ascontiguousarray(image, dtype=np.float64).ravel()[self.index]


def group_pixels(labels: np.ndarray) -> ObjectPixels:
    """Group the foreground pixels of ``labels`` ``(H, W)`` (labels ``1..N``) by object.

    Examples
    --------
    >>> import numpy as np
    >>> from cellcompare.features.grouping import group_pixels
    >>> g = group_pixels(np.array([[0, 2], [1, 2]]))
    >>> g.index.tolist(), g.offsets.tolist()
    ([2, 1, 3], [0, 1, 3])
    """
    flat = np.ascontiguousarray(labels).ravel()
    n = int(flat.max()) if flat.size else 0
    fg = np.flatnonzero(flat)
    index = fg[np.argsort(flat[fg], kind="stable")]
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(np.bincount(flat[fg], minlength=n + 1)[1:], out=offsets[1:])
    return ObjectPixels(index=index, offsets=offsets, shape=tuple(labels.shape))


def object_boxes(masks: np.ndarray, n: int) -> np.ndarray:
    """``(n, 4)`` row start/stop, column start/stop of labels ``1..n`` (zeros when absent)."""
    boxes = np.zeros((n, 4), np.int64)
    for k, sl in enumerate(scipy.ndimage.find_objects(masks, max_label=n)):
        if sl is not None:
            boxes[k] = (sl[0].start, sl[0].stop, sl[1].start, sl[1].stop)
    return boxes


@dataclass(frozen=True)
class ObjectLayout:
    """A sanitised label image ``1..N`` and its object grouping, boxes and hulls, each found once.

    The families of one object type share them instead of each recomputing them.

    Attributes
    ----------
    labels : np.ndarray
        ``(H, W)`` integer labels ``1..N``.
    """

    labels: np.ndarray

    @cached_property
    def count(self) -> int:
        """Number of objects ``N``."""
        return int(self.labels.max()) if self.labels.size else 0

    @cached_property
    def groups(self) -> ObjectPixels:
        """:func:`group_pixels` of the labels."""
        return group_pixels(self.labels)

    @cached_property
    def boxes(self) -> np.ndarray:
        """:func:`object_boxes` of the labels."""
        return object_boxes(self.labels, self.count)

    @cached_property
    def hull(self) -> tuple[np.ndarray, np.ndarray]:
        """Convex hulls of the objects (``centrosome.cpmorphology.convex_hull``).

        centrosome builds them from the outline pixels, cp_measure's Feret from every pixel;
        the extreme points are outline pixels, so the hulls are the same (Feret diameters and
        Zernike's enclosing circles are tested equal to cp_measure's).
        """
        return convex_hull(self.labels, np.arange(1, self.count + 1))
