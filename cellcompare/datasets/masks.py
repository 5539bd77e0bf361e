"""Reader of label images made elsewhere (cellpose, StarDist, CellProfiler) for a dataset's samples.

A mask source is a path template relative to the dataset root, filled from the sample
(``masks/{sample_id}_nuclei.png``, ``{stem}_cp_masks.png``, ``labels/{plate}/{well}_{site}.tif``),
or ``loaddata``: LoadData's ``ObjectsFileName_{object}`` / ``ObjectsPathName_{object}`` columns,
as CellProfiler writes and reads them. Every file is checked: one plane, integer labels
(non-negative; floats only when whole), the image's height and width.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from skimage.segmentation import relabel_sequential

from .errors import DatasetError
from .imageio import read_image

__all__ = ["MaskError", "mask_path", "read_labels", "read_masks"]

#: Sample metadata key a LoadData reader fills with ``{object: path}`` of its ``ObjectsFileName_``.
OBJECTS_KEY = "objects_files"


class MaskError(DatasetError):
    """A label image is missing or not a valid label image for its sample."""


def _fields(sample: Any) -> dict[str, str]:
    fields = {"sample_id": str(sample.id),
              "stem": Path(sample.paths[0]).stem if getattr(sample, "paths", ()) else str(sample.id)}
    for key, value in (sample.metadata or {}).items():
        if isinstance(key, str) and key.startswith("Metadata_") and value is not None:
            fields.setdefault(key[len("Metadata_"):].lower(), str(value))
    return fields


def mask_path(sample: Any, obj: str, source: str, root: str | Path) -> Path:
    """The label-image file of object type ``obj`` of ``sample``.

    Parameters
    ----------
    sample : datasets.Sample
        Its id, first file's stem and ``Metadata_*`` values fill the template.
    obj : str
        ``Nuclei`` or ``Cells``.
    source : str
        A template relative to ``root`` (or absolute), or ``loaddata``.
    root : str or Path
        The dataset root.

    Examples
    --------
    >>> from cellcompare.datasets.sample import Sample
    >>> from cellcompare.datasets.masks import mask_path
    >>> s = Sample(id="P1_A01_1", image=None, metadata={"Metadata_Well": "A01"}, paths=("/d/A01_w1.tif",))
    >>> mask_path(s, "Nuclei", "masks/{well}/{stem}_nuclei.png", "/d").as_posix()
    '/d/masks/A01/A01_w1_nuclei.png'
    """
    if source == "loaddata":
        files = (sample.metadata or {}).get(OBJECTS_KEY) or {}
        if obj not in files:
            raise MaskError(f"sample {sample.id!r}: masks: {obj}: loaddata, but its LoadData row has no "
                            f"ObjectsFileName_{obj} / ObjectsPathName_{obj} columns")
        return Path(files[obj])
    names = {name for _, name, _, _ in string.Formatter().parse(source) if name}
    fields = _fields(sample)
    unknown = sorted(names - set(fields))
    if unknown:
        raise MaskError(f"masks: {obj}: template {source!r} uses {unknown}, which sample {sample.id!r} "
                        f"does not have; known fields: {sorted(fields)}")
    path = Path(source.format(**fields))
    return path if path.is_absolute() else Path(root) / path


def read_labels(path: str | Path, shape: tuple[int, int]) -> np.ndarray:
    """Read and check one label image: ``(H, W)`` int32, labels ``1..n`` consecutive.

    Raises
    ------
    MaskError
        The file is missing or unreadable, has several planes, a shape other than ``shape``,
        non-integer or negative values.
    """
    path = Path(path)
    if not path.is_file():
        raise MaskError(f"label image {path} not found")
    try:
        array = read_image(path)
    except (OSError, ValueError) as exc:
        raise MaskError(f"label image {path} cannot be read: {exc}") from exc
    if array.shape[0] != 1:
        raise MaskError(f"label image {path} has {array.shape[0]} planes; a label image has one "
                        "(save masks as a single-channel integer PNG or TIFF)")
    labels = array[0]
    if labels.shape != tuple(shape):
        raise MaskError(f"label image {path} is {labels.shape[0]}x{labels.shape[1]}; its image is "
                        f"{shape[0]}x{shape[1]}")
    if labels.dtype == bool:
        labels = labels.astype(np.int32)
    if np.issubdtype(labels.dtype, np.floating):
        if not np.all(np.isfinite(labels)) or not np.array_equal(labels, np.round(labels)):
            raise MaskError(f"label image {path} holds non-integer values ({labels.dtype}); labels are "
                            "whole numbers")
    elif not np.issubdtype(labels.dtype, np.integer):
        raise MaskError(f"label image {path} has dtype {labels.dtype}; expected integer labels")
    if labels.min() < 0:
        raise MaskError(f"label image {path} holds negative labels (min {labels.min()})")
    if labels.max() > np.iinfo(np.int32).max:
        raise MaskError(f"label image {path} holds labels above 2**31 - 1")
    return relabel_sequential(labels.astype(np.int64))[0].astype(np.int32)


def read_masks(sample: Any, sources: Mapping[str, str], root: str | Path) -> dict[str, np.ndarray]:
    """The label images ``{object: (H, W) int32}`` of one sample (see :func:`mask_path`).

    With both ``Nuclei`` and ``Cells``, cells are renumbered by the nucleus they hold (each
    nucleus takes the cell label under most of its pixels), as CellProfiler's secondary
    objects are; a cell without a nucleus is dropped and a nucleus outside any cell raises.
    """
    shape = tuple(sample.image.shape[-2:])
    masks = {obj: read_labels(mask_path(sample, obj, source, root), shape) for obj, source in sources.items()}
    if "Nuclei" in masks and "Cells" in masks:
        masks["Cells"] = _cells_by_nucleus(masks["Nuclei"], masks["Cells"],
                                           mask_path(sample, "Cells", sources["Cells"], root))
    return masks


def _cells_by_nucleus(nuclei: np.ndarray, cells: np.ndarray, where: Path) -> np.ndarray:
    n = int(nuclei.max())
    out = np.zeros_like(cells)
    inside = nuclei > 0
    pairs = np.stack([nuclei[inside], cells[inside]], axis=1)
    for k in range(1, n + 1):
        under = pairs[pairs[:, 0] == k, 1]
        under = under[under > 0]
        if not len(under):
            raise MaskError(f"label image {where}: nucleus {k} lies outside every cell")
        out[cells == np.bincount(under).argmax()] = k
    out[inside] = nuclei[inside]
    return out
