"""Single-cell crops (the DeepProfiler convention): one square crop per nucleus, cut once.

A deep model of ``granularity: cell`` sees one crop per segmented nucleus, centred on the
nucleus centroid, from the same segmentation the CellProfiler features use
(``features.extract.segment_sample`` with the run's ``FeatureConfig``). Crops are zero-padded at
image borders; pixels outside the cell's own mask can be set to 0. An image's prediction is the
mean of its cells' probabilities, the rule of the classical cell granularity.

:func:`cut_crops` is a pure function over arrays; :func:`sample_crops` is the one path from a
``Sample`` to its crops (comparison and serve both call it); ``deep.crop_cache.CropCache`` cuts
every crop of a run once into a memory-mapped ``.npy`` file so that no epoch decodes images again.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from .errors import DeepError
from .inputs import sample_input

__all__ = [
    "CROP_DTYPE",
    "CROP_FACTOR",
    "CellCrops",
    "CropError",
    "auto_crop_size",
    "choose_cells",
    "crop_means",
    "cut_crops",
    "group_scales",
    "means_by_key",
    "nucleus_centers",
    "sample_crops",
    "segment_for_crops",
]

log = logging.getLogger(__name__)

#: Default crop side as a multiple of the median nucleus diameter (~64 px at the demo's 256-px
#: sites): the nucleus, its cytoplasm and a margin of the neighbourhood.
CROP_FACTOR = 3.5
#: How crops are stored: the crop cache's dtype, so a model is trained on float16-rounded crops
#: and served the same (``deep.cells.CellInputs.from_samples``).
CROP_DTYPE = np.float16


class CropError(DeepError):
    """Crops cannot be cut (bad centres, sizes, or a cache written with other settings)."""


def auto_crop_size(diameters: np.ndarray, *, factor: float = CROP_FACTOR, multiple: int = 8,
                   minimum: int = 16) -> int:
    """Crop side for nuclei of these equivalent diameters: ``factor`` x median, rounded up.

    Parameters
    ----------
    diameters : np.ndarray
        Equivalent diameters (px) of segmented nuclei, any shape.
    factor : float
        Multiple of the median diameter.
    multiple : int
        The size is rounded up to a multiple of this.
    minimum : int
        Smallest size returned (also used when there are no nuclei).

    Returns
    -------
    int

    Examples
    --------
    >>> auto_crop_size(np.array([18.0, 18.2, 17.9]))
    64
    """
    d = np.asarray(diameters, dtype=float).ravel()
    d = d[np.isfinite(d) & (d > 0)]
    if not len(d):
        return minimum
    size = int(np.ceil(factor * float(np.median(d)) / multiple) * multiple)
    return max(minimum, size)


def nucleus_centers(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Object ids, centroids and equivalent diameters of a label image.

    Parameters
    ----------
    labels : np.ndarray
        ``(H, W)`` integer label image, 0 is background.

    Returns
    -------
    ids : np.ndarray
        int64 ``(N,)`` object ids present, ascending.
    centers : np.ndarray
        float64 ``(N, 2)`` centroids as ``(y, x)`` (the features' ``Metadata_Location_Center_Y/X``).
    diameters : np.ndarray
        float64 ``(N,)`` diameter of the circle of equal area.
    """
    from cellcompare.features import object_centroids  # the features' own centre definition

    labels = np.asarray(labels).astype(np.int64, copy=False)
    area = np.bincount(labels.ravel(), minlength=int(labels.max(initial=0)) + 1).astype(float)
    ids = np.nonzero(area)[0]
    ids = ids[ids > 0]
    x, y = object_centroids(labels, ids)
    return ids.astype(np.int64), np.stack([y, x], axis=1), 2 * np.sqrt(area[ids] / np.pi)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on uint64 (wrapping arithmetic): a well-spread hash per value."""
    x = (x + np.uint64(0x9E3779B97F4A7C15)) & np.uint64(0xFFFFFFFFFFFFFFFF)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def choose_cells(objects: np.ndarray, centers: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    """Positions of at most ``limit`` of one image's cells, the same wherever they are cut.

    Each cell is ranked by a seeded hash of its ObjectNumber and its rounded centre; the
    ``limit`` lowest are kept. The choice depends only on the image's segmentation and ``seed``
    (not on a sample id, a fold or the other images), so the crop cache of a comparison and a
    served image choose the same cells.

    Parameters
    ----------
    objects : np.ndarray
        int ``(N,)`` ObjectNumbers.
    centers : np.ndarray
        float ``(N, 2)`` (row, col) centres.
    limit : int or None
        Cells to keep; ``None`` (or at least ``N``) keeps all.
    seed : int
        Seed of the choice.

    Returns
    -------
    np.ndarray
        int64 sorted positions into ``objects``.

    Examples
    --------
    >>> objects, centers = np.arange(1, 6), np.array([[5.0, 5.0 * k] for k in range(5)])
    >>> keep = choose_cells(objects, centers, 3, seed=0)
    >>> len(keep), keep.tolist() == choose_cells(objects, centers, 3, seed=0).tolist()
    (3, True)
    >>> choose_cells(objects, centers, None, seed=0).tolist()
    [0, 1, 2, 3, 4]
    """
    n = len(objects)
    if limit is None or n <= limit:
        return np.arange(n, dtype=np.int64)
    with np.errstate(over="ignore"):
        where = np.rint(np.asarray(centers, dtype=np.float64)).astype(np.int64).astype(np.uint64)
        key = _mix(_mix(np.asarray(objects, dtype=np.int64).astype(np.uint64) ^ _mix(np.uint64(seed % 2**64)))
                   ^ ((where[:, 0] << np.uint64(32)) | (where[:, 1] & np.uint64(0xFFFFFFFF))))
    return np.sort(np.argsort(key, kind="stable")[:limit]).astype(np.int64)


def cut_crops(image: np.ndarray, centers: np.ndarray, size: int, *, cells: np.ndarray | None = None,
              ids: np.ndarray | None = None) -> np.ndarray:
    """Square crops of ``image`` centred on ``centers``, zero-padded at the borders.

    Parameters
    ----------
    image : np.ndarray
        ``(C, H, W)``.
    centers : np.ndarray
        ``(N, 2)`` centres as ``(y, x)`` in pixels (rounded to the nearest pixel).
    size : int
        Side of each crop.
    cells : np.ndarray, optional
        ``(H, W)`` cell label image; with ``ids``, pixels outside cell ``ids[i]`` are set to 0 in
        crop ``i`` (mask the neighbours out).
    ids : np.ndarray, optional
        ``(N,)`` cell id of each crop (required with ``cells``).

    Returns
    -------
    np.ndarray
        ``(N, C, size, size)``, ``image``'s dtype.

    Examples
    --------
    >>> img = np.arange(16, dtype=np.float32).reshape(1, 4, 4)
    >>> cut_crops(img, np.array([[0.0, 0.0]]), 2)[0, 0].tolist()
    [[0.0, 0.0], [0.0, 0.0]]
    """
    image = np.asarray(image)
    if image.ndim != 3:
        raise CropError(f"image must be (C, H, W), found shape {image.shape}")
    centers = np.asarray(centers, dtype=float).reshape(-1, 2)
    if size < 1:
        raise CropError(f"crop size must be >= 1, found {size}")
    if cells is not None and (ids is None or len(ids) != len(centers)):
        raise CropError("masking crops by cell needs one cell id per centre (ids=)")
    c, h, w = image.shape
    half = size // 2
    padded = np.zeros((c, h + 2 * size, w + 2 * size), dtype=image.dtype)
    padded[:, size:size + h, size:size + w] = image
    if cells is not None:
        owner = np.zeros((h + 2 * size, w + 2 * size), dtype=np.asarray(cells).dtype)
        owner[size:size + h, size:size + w] = cells
    out = np.zeros((len(centers), c, size, size), dtype=image.dtype)
    for i, (cy, cx) in enumerate(centers):
        top = int(np.clip(np.rint(cy) - half, -size, h)) + size
        left = int(np.clip(np.rint(cx) - half, -size, w)) + size
        out[i] = padded[:, top:top + size, left:left + size]
        if cells is not None:
            out[i] *= owner[top:top + size, left:left + size] == ids[i]
    return out


def segment_for_crops(sample: Any, feature_config: Any,
                      channel_names: Sequence[str] | None = None, *,
                      root: Any = None) -> tuple[np.ndarray, np.ndarray]:
    """The features' segmentation of one sample: ``(nuclei, cells)`` label images.

    Whole-object configurations (one object per image) return the object twice; with
    ``feature_config.masks`` the sample's own label images are read (relative to ``root``).
    """
    from cellcompare.features.extract import sample_segmentation, segment_sample

    if getattr(feature_config, "masks", None):
        masks = sample_segmentation(sample, feature_config, root=root).masks
        return masks.get("Nuclei", masks["Cells"]), masks["Cells"]

    names = tuple(channel_names) if channel_names is not None else tuple(
        sample.metadata.get("channel_names") or ())
    image = np.asarray(sample.float_image, dtype=np.float64)
    if len(names) != image.shape[0]:
        names = tuple(f"C{i + 1}" for i in range(image.shape[0]))
    masks = segment_sample(image, names, feature_config, str(getattr(sample, "id", "?")))
    nuclei = masks.get("Nuclei", masks["Cells"])
    return nuclei, masks["Cells"]


def sample_crops(sample: Any, feature_config: Any, *, crop_size: int,
                 channels: Sequence[int] | None = None, mask: bool = False,
                 channel_names: Sequence[str] | None = None) -> tuple[np.ndarray, pd.DataFrame]:
    """A deep cell model's input for one sample: its cells' crops and where they come from.

    Parameters
    ----------
    sample : datasets.Sample
        The full image; segmentation uses its channels by name.
    feature_config : features.FeatureConfig
        The run's segmentation settings (the same nuclei the features measure).
    crop_size : int
        Side of each crop.
    channels : sequence of int, optional
        Channel positions the model uses (``deep.inputs.sample_input``); ``None`` keeps all.
    mask : bool
        Set pixels outside the cell's own mask to 0.
    channel_names : sequence of str, optional
        Names of the sample's channels (defaults to ``sample.metadata["channel_names"]``).

    Returns
    -------
    crops : np.ndarray
        float32 ``(N, C', crop_size, crop_size)`` in [0, 1].
    cells : pd.DataFrame
        ``Metadata_sample_id, Metadata_ObjectNumber, Metadata_Location_Center_X/Y`` per crop.
    """
    nuclei, cells = segment_for_crops(sample, feature_config, channel_names)
    ids, centers, _ = nucleus_centers(nuclei)
    image = sample_input(sample, channels)
    crops = cut_crops(image, centers, crop_size, cells=cells if mask else None, ids=ids)
    table = pd.DataFrame({"Metadata_sample_id": str(sample.id), "Metadata_ObjectNumber": ids,
                          "Metadata_Location_Center_X": centers[:, 1],
                          "Metadata_Location_Center_Y": centers[:, 0]})
    return crops.astype(np.float32, copy=False), table


def crop_means(crops: np.ndarray, rows: np.ndarray, *, chunk: int = 512) -> np.ndarray:
    """float64 ``(M, C)`` mean of each channel of each crop ``crops[rows]`` (read in chunks).

    Examples
    --------
    >>> crops = np.stack([np.full((2, 2, 2), v, np.float16) for v in (1.0, 3.0)])
    >>> crop_means(crops, np.array([1, 0])).tolist()
    [[3.0, 3.0], [1.0, 1.0]]
    """
    rows = np.asarray(rows, dtype=np.int64)
    means = np.zeros((len(rows), crops.shape[1]), dtype=np.float64)
    for start in range(0, len(rows), chunk):
        block = np.asarray(crops[rows[start:start + chunk]], dtype=np.float64)
        means[start:start + chunk] = block.mean(axis=(2, 3))
    return means


def means_by_key(per_crop: np.ndarray, keys: np.ndarray) -> dict[str, np.ndarray]:
    """``{key: (C,) mean of its crops' channel means}`` (:func:`crop_means` rows, one key each)."""
    keys = np.asarray(keys).astype(str)
    return {str(key): per_crop[keys == key].mean(axis=0) for key in np.unique(keys)}


def group_scales(crops: np.ndarray, rows: np.ndarray, keys: np.ndarray, *,
                 chunk: int = 512, means: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
    """Per crop, ``1 / mean`` of each channel over all crops sharing its key (plate or image).

    Dividing by the group mean removes a plate's (or an image's) multiplicative staining and
    illumination gain, the way per-plate normalisation of CellProfiler features does.

    Parameters
    ----------
    crops : np.ndarray
        ``(N, C, S, S)`` (a memmap is read in chunks).
    rows : np.ndarray
        ``(M,)`` positions of the crops used.
    keys : np.ndarray
        ``(M,)`` group key of each used crop.
    means : mapping, optional
        ``{key: (C,) channel means}`` given for some keys (e.g. statistics stored with a
        model); the crops of those keys are scaled by them instead of their own mean.

    Returns
    -------
    np.ndarray
        float32 ``(M, C)``; a channel whose group mean is 0 gets scale 1.

    Examples
    --------
    >>> crops = np.stack([np.full((1, 2, 2), v, np.float32) for v in (1.0, 3.0)])
    >>> group_scales(crops, np.arange(2), np.array(["p", "p"])).ravel().tolist()
    [0.5, 0.5]
    >>> stored = {"p": np.array([4.0])}
    >>> group_scales(crops, np.arange(2), np.array(["p", "p"]), means=stored).ravel().tolist()
    [0.25, 0.25]
    """
    rows = np.asarray(rows, dtype=np.int64)
    keys = np.asarray(keys).astype(str)
    if len(rows) != len(keys):
        raise CropError(f"{len(rows)} crops but {len(keys)} group keys")
    given = dict(means or {})
    own = [k for k in np.unique(keys) if k not in given]
    per_crop = crop_means(crops, rows, chunk=chunk) if own else None
    scales = np.ones((len(rows), crops.shape[1]), dtype=np.float64)
    for key in np.unique(keys):
        member = keys == key
        mean = (np.asarray(given[key], dtype=np.float64) if key in given
                else per_crop[member].mean(axis=0))
        scales[member] = np.where(mean > 1e-8, 1.0 / np.maximum(mean, 1e-8), 1.0)
    return scales.astype(np.float32)


class CellCrops(Sequence):
    """Lazy float32 view of some crops of an array (a :class:`CropCache`'s memmap, or in memory).

    Parameters
    ----------
    crops : np.ndarray
        ``(N, C, S, S)``, any float dtype (float16 in a cache).
    rows : sequence of int, optional
        Which crops, in order (default: all).
    scale : np.ndarray, optional
        ``(len(rows), C)`` per-channel factors applied on access (:func:`group_scales`).
    """

    def __init__(self, crops: np.ndarray, rows: Sequence[int] | None = None,
                 scale: np.ndarray | None = None) -> None:
        self.crops = crops
        self.rows = np.arange(len(crops)) if rows is None else np.asarray(rows, dtype=np.int64)
        if scale is not None and len(scale) != len(self.rows):
            raise CropError(f"{len(self.rows)} crops but {len(scale)} scale rows")
        self.scale = None if scale is None else np.asarray(scale, dtype=np.float32)

    def subset(self, positions: Sequence[int]) -> CellCrops:
        """The crops at ``positions`` of this view (their scales follow)."""
        positions = np.asarray(positions, dtype=np.int64)
        return CellCrops(self.crops, self.rows[positions],
                         None if self.scale is None else self.scale[positions])

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> np.ndarray:  # type: ignore[override]
        crop = np.asarray(self.crops[int(self.rows[i])], dtype=np.float32)
        if self.scale is not None:
            crop = crop * self.scale[i][:, None, None]
        return crop
