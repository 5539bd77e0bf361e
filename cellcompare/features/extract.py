"""One image in memory → per-cell table and per-image (aggregated) row."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd

from cellcompare.datasets.platemeta import metadata_columns

from .config import FeatureConfig
from .measure import image_spectra, measure_objects
from .segmentation import cytoplasm, segment_cells, segment_nuclei, segment_whole_object


class ChannelConfigError(ValueError):
    """A configured channel name is not among the sample's channels."""


def _channel_names(sample: Any) -> tuple[str, ...]:
    names = tuple(sample.metadata.get("channel_names") or ())
    if len(names) != sample.image.shape[0]:
        names = tuple(f"C{i + 1}" for i in range(sample.image.shape[0]))
    return names


def _index(names: tuple[str, ...], wanted: str | None, default: int, role: str, sid: str) -> int:
    if wanted is None:
        return min(default, len(names) - 1)
    if wanted not in names:
        raise ChannelConfigError(f"sample {sid!r}: {role} channel {wanted!r} not in channels {names}")
    return names.index(wanted)


def _scale_max(image: np.ndarray) -> int:
    return int(np.iinfo(image.dtype).max) if np.issubdtype(image.dtype, np.integer) else 255


def segment_sample(image: np.ndarray, names: tuple[str, ...], config: FeatureConfig,
                   sid: str = "?") -> dict[str, np.ndarray]:
    """Label images per object type for a float ``(C, H, W)`` image.

    Each plane segmented is read in float64 (the whole-object mean is taken in float64), so a
    float32 image gives the masks its float64 copy would.

    Returns ``{"Nuclei", "Cells", "Cytoplasm"}`` label images (only ``Cells`` in
    whole-object mode), all numbered by nucleus.
    """
    if config.whole_object:  # one channel is its own mean: no copy of it
        plane = image[0] if image.shape[0] == 1 else image.mean(axis=0, dtype=np.float64)
        return {"Cells": segment_whole_object(plane)}
    dna = _index(names, config.dna_channel, 0, "DNA", sid)
    cyto = _index(names, config.cyto_channel, 1, "cytoplasm", sid)
    nuclei = segment_nuclei(image[dna], method=config.threshold_method,
                            smoothing_sigma=config.smoothing_sigma, min_area=config.min_area,
                            max_area=config.max_area, declump=config.declump,
                            exclude_border=config.exclude_border)
    cells = segment_cells(image[cyto], nuclei, threshold_method=config.threshold_method,
                          threshold_scale=config.cell_threshold_scale,
                          smoothing_sigma=config.smoothing_sigma,
                          regularization=config.regularization)
    return {"Nuclei": nuclei, "Cells": cells, "Cytoplasm": cytoplasm(cells, nuclei)}


#: Rows of a label image per bincount pass: per-object sums never hold the whole image's
#: coordinates (two int64 planes, 256 MiB at 4096 x 4096) at once.
_ROWS_PER_PASS = 256


def _label_sums(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pixel count, sum of columns and sum of rows of each label ``0..max``, a band of rows at a time.

    The sums are of integers below 2**53, so they are exact whatever the order of summation.
    """
    labels = np.asarray(labels)
    n = int(labels.max(initial=0)) + 1
    height, width = labels.shape
    count, sum_x, sum_y = np.zeros(n), np.zeros(n), np.zeros(n)
    columns = np.arange(width, dtype=np.float64)
    for top in range(0, height, _ROWS_PER_PASS):
        band = labels[top:top + _ROWS_PER_PASS]
        flat = band.ravel()
        rows = np.repeat(np.arange(top, top + len(band), dtype=np.float64), width)
        count += np.bincount(flat, minlength=n)
        sum_x += np.bincount(flat, np.tile(columns, len(band)), minlength=n)
        sum_y += np.bincount(flat, rows, minlength=n)
    return count, sum_x, sum_y


def object_centroids(labels: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centroids of objects ``ids`` of a label image: ``Metadata_Location_Center_X/Y``.

    The one centre definition of the project: the feature tables, the cell crops and the
    annotation matching all place a cell here.

    Parameters
    ----------
    labels : np.ndarray
        ``(H, W)`` integer label image, 0 is background.
    ids : np.ndarray
        ``(N,)`` object numbers to locate.

    Returns
    -------
    x, y : np.ndarray
        float64 ``(N,)`` mean column and mean row of each object's pixels (NaN for an id with
        no pixel).

    Examples
    --------
    >>> import numpy as np
    >>> from cellcompare.features import object_centroids
    >>> labels = np.zeros((5, 6), dtype=int); labels[1:4, 2:5] = 1
    >>> [v.tolist() for v in object_centroids(labels, np.array([1]))]
    [[3.0], [2.0]]
    """
    count, sum_x, sum_y = _label_sums(labels)
    with np.errstate(invalid="ignore", divide="ignore"):
        x, y = sum_x / count, sum_y / count
    return x[ids], y[ids]


def measure_sample(image: np.ndarray, names: tuple[str, ...], masks: dict[str, np.ndarray],
                   config: FeatureConfig, scale_max: int = 255) -> pd.DataFrame:
    """Per-object features of all object types, one row per primary object number."""
    channels = config.channels or names
    missing = [c for c in channels if c not in names]
    if missing:
        raise ChannelConfigError(f"channels {missing} not in the image's channels {names}")
    index = [names.index(c) for c in channels]
    sub = image if index == list(range(len(names))) else image[index]  # no copy when all, in order
    primary = "Nuclei" if "Nuclei" in masks else "Cells"
    ids = np.flatnonzero(_label_sums(masks[primary])[0])  # np.unique's ids, without sorting a copy
    ids = ids[ids > 0].astype(masks[primary].dtype)
    table = pd.DataFrame(index=pd.Index(ids, name="ObjectNumber"))
    spectra = image_spectra(sub, config)         # granularity series: once per image, not per object type
    for obj in config.objects:
        if obj not in masks:
            continue
        obj_ids, feats = measure_objects(obj, masks[obj], sub, channels, config, scale_max=scale_max,
                                         spectra=spectra)
        if feats:                                # one float64 block, not a Series per column
            values = np.empty((len(obj_ids), len(feats)))
            for k, column in enumerate(feats.values()):
                values[:, k] = column
            block = pd.DataFrame(values, columns=list(feats), index=pd.Index(obj_ids, name="ObjectNumber"))
            table = table.join(block, how="left")
    x, y = object_centroids(masks[primary], ids)
    table.insert(0, "Metadata_Location_Center_Y", y)
    table.insert(0, "Metadata_Location_Center_X", x)
    return table.reset_index(names="Metadata_ObjectNumber")


def aggregate(cells: pd.DataFrame, meta: dict[str, Any]) -> pd.DataFrame:
    """Per-image row: median under each feature's name, mean as ``{feature}__mean``.

    Parameters
    ----------
    cells : pd.DataFrame
        Per-cell table (``Metadata_*`` + numeric feature columns), possibly empty.
    meta : dict
        Image-level metadata columns (``Metadata_ImageNumber``, ``Metadata_sample_id``, ...).

    Returns
    -------
    pd.DataFrame
        One row with ``meta``, ``Metadata_Object_Count`` and the aggregated features
        (NaN when there are no cells).
    """
    feats = [c for c in cells.columns if not c.startswith("Metadata_")]
    values = cells[feats].to_numpy(dtype=np.float64) if len(cells) else np.full((1, len(feats)), np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        med = np.nanmedian(values, axis=0)
        mean = np.nanmean(values, axis=0)
    row = {**meta, "Metadata_Object_Count": int(len(cells))}
    row.update(dict(zip(feats, med)))
    row.update({f"{f}__mean": m for f, m in zip(feats, mean)})
    return pd.DataFrame([row])


def extract_sample(sample: Any, config: FeatureConfig, *, image_number: int = 1,
                   masks: dict[str, np.ndarray] | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Segment and measure one sample.

    Parameters
    ----------
    sample : datasets.Sample
        The image ``(C, H, W)`` and its metadata (``metadata["channel_names"]``).
    config : FeatureConfig
        Segmentation and measurement settings.
    image_number : int
        ``Metadata_ImageNumber`` written to both tables (1-based dataset position).
    masks : dict, optional
        Precomputed label images per object type (skips segmentation).

    Returns
    -------
    cells : pd.DataFrame
        One row per object with the ``Metadata_*`` columns of docs/CONTRACTS.md.
    image_row : pd.DataFrame
        One row: the per-image aggregation (``Metadata_Object_Count`` 0 when no cells).
    """
    names = _channel_names(sample)
    # float32 [0, 1], the one full copy of the decoded image: segmentation reads each plane it
    # needs in float64 and the measurements compute in float64 (same numbers as a float64 copy,
    # half its memory)
    image = sample.float_image
    if masks is None:
        masks = segment_sample(image, names, config, sample.id)
    cells = measure_sample(image, names, masks, config, _scale_max(sample.image))
    meta = {"Metadata_ImageNumber": int(image_number), "Metadata_sample_id": str(sample.id),
            "Metadata_label": sample.label, "Metadata_group": sample.group}
    for key, value in metadata_columns(sample.metadata).items():  # Plate, Well, Site, ...
        meta.setdefault(key, value)
    for key, value in reversed(list(meta.items())):
        cells.insert(0, key, value)
    cells["Metadata_ObjectNumber"] = cells["Metadata_ObjectNumber"].astype(np.int64)
    return cells, aggregate(cells, meta)
