"""One image in memory → per-cell table and per-image (aggregated) row."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cellcompare.datasets.platemeta import metadata_columns

from .config import FeatureConfig
from .measure import image_spectra, measure_objects
from .segmentation import cytoplasm, identify_nuclei, segment_cells, segment_whole_object


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


@dataclass(frozen=True)
class SampleSegmentation:
    """One image's label images per object type and its segmentation QC numbers.

    ``qc`` holds the per-image ``Metadata_QC_*`` columns (:data:`QC_COLUMNS`): objects found
    before the filters, discarded as too small, too large or on the border, the thresholded
    foreground fraction and the median equivalent diameter of the kept primary objects.
    """

    masks: dict[str, np.ndarray]
    qc: dict[str, float]


#: Per-image segmentation QC columns of the image table (``Metadata_*``: never features).
QC_COLUMNS = ("Metadata_QC_Found", "Metadata_QC_DiscardedSmall", "Metadata_QC_DiscardedLarge",
              "Metadata_QC_DiscardedBorder", "Metadata_QC_ForegroundFraction",
              "Metadata_QC_MedianDiameter")


def _median_diameter(labels: np.ndarray) -> float:
    areas = np.bincount(labels.ravel())[1:]
    areas = areas[areas > 0]
    return float(np.median(2 * np.sqrt(areas / np.pi))) if len(areas) else float("nan")


def _qc(primary: np.ndarray, found: int, small: int, large: int, border: int,
        foreground: float) -> dict[str, float]:
    return dict(zip(QC_COLUMNS, (found, small, large, border, foreground, _median_diameter(primary))))


def identify_sample(image: np.ndarray, names: tuple[str, ...], config: FeatureConfig,
                    sid: str = "?") -> SampleSegmentation:
    """Label images per object type of a float ``(C, H, W)`` image, with QC numbers.

    ``Nuclei``, ``Cells`` and ``Cytoplasm`` (only ``Cells`` in whole-object mode), all
    numbered by nucleus. Unset channels fall back on the first two; unset diameters are
    estimated from this image: resolve them once per dataset with
    :func:`features.plan.resolve_segmentation` so every image uses the same. Each plane
    segmented is read in float64 (a whole-object mean is taken in float64), so a float32 image
    gives the masks its float64 copy would.
    """
    if config.whole_object:  # one channel is its own mean (no copy); a mean is taken in float64
        cells = segment_whole_object(image[0] if image.shape[0] == 1
                                     else image.mean(axis=0, dtype=np.float64))
        return SampleSegmentation({"Cells": cells},
                                  _qc(cells, int(cells.max()), 0, 0, 0, float((cells > 0).mean())))
    dna = _index(names, config.dna_channel, 0, "DNA", sid)
    cyto = _index(names, config.cyto_channel, 1, "cytoplasm", sid)
    found = identify_nuclei(image[dna], diameter=config.diameter, threshold=config.threshold,
                            smoothing_sigma=config.smoothing_sigma, min_area=config.min_area,
                            max_area=config.max_area, declump=config.declump,
                            exclude_border=config.exclude_border)
    nuclei = found.labels
    cells = segment_cells(image[cyto], nuclei, threshold_method=config.threshold_method,
                          threshold_scale=config.cell_threshold_scale,
                          smoothing_sigma=1.0 if config.smoothing_sigma is None else config.smoothing_sigma,
                          regularization=config.regularization)
    masks = {"Nuclei": nuclei, "Cells": cells, "Cytoplasm": cytoplasm(cells, nuclei)}
    return SampleSegmentation(masks, _qc(nuclei, found.found, found.small, found.large,
                                         found.border, found.foreground))


def sample_segmentation(sample: Any, config: FeatureConfig, *,
                        root: str | Path | None = None) -> SampleSegmentation:
    """The label images of one sample: its own (``config.masks``) or segmented.

    Parameters
    ----------
    sample : datasets.Sample
        The image and its metadata.
    config : FeatureConfig
        With ``masks`` set, the label images are read (:func:`datasets.masks.read_masks`,
        templates relative to ``root``); given nuclei only, cells are grown from them on the
        cytoplasm channel as when segmenting.
    root : str or Path, optional
        The dataset root (default: the folder of the sample's first file).

    Returns
    -------
    SampleSegmentation
    """
    image = sample.float_image             # float32; each plane segmented is read in float64
    names = _channel_names(sample)
    if not config.masks:
        return identify_sample(image, names, config, str(sample.id))
    from cellcompare.datasets.masks import read_masks

    if root is None:
        root = Path(sample.paths[0]).parent if sample.paths else Path(".")
    masks = read_masks(sample, config.masks, root)
    if "Nuclei" in masks and "Cells" not in masks:
        cyto = _index(names, config.cyto_channel, 1, "cytoplasm", str(sample.id))
        masks["Cells"] = segment_cells(image[cyto], masks["Nuclei"], threshold_method=config.threshold_method,
                                       threshold_scale=config.cell_threshold_scale,
                                       regularization=config.regularization)
    if "Nuclei" in masks:
        masks["Cytoplasm"] = cytoplasm(masks["Cells"], masks["Nuclei"])
    primary = masks.get("Nuclei", masks["Cells"])
    return SampleSegmentation(masks, _qc(primary, int(primary.max()), 0, 0, 0, float((primary > 0).mean())))


def segment_sample(image: np.ndarray, names: tuple[str, ...], config: FeatureConfig,
                   sid: str = "?") -> dict[str, np.ndarray]:
    """Label images per object type for a float ``(C, H, W)`` image (see :func:`identify_sample`).

    Returns ``{"Nuclei", "Cells", "Cytoplasm"}`` label images (only ``Cells`` in
    whole-object mode), all numbered by nucleus.
    """
    return identify_sample(image, names, config, sid).masks


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


def image_metadata(sample_id: str, label: Any, group: Any, metadata: Mapping[str, Any],
                   image_number: int) -> dict[str, Any]:
    """The ``Metadata_*`` columns of one image's rows in every feature table (CellProfiler
    features and embeddings alike): ImageNumber, sample id, label, group, then Plate, Well,
    Site and the sample's other ``Metadata_*`` keys (``datasets.platemeta.metadata_columns``).

    Examples
    --------
    >>> image_metadata("s1", "a", "p1", {"Metadata_Well": "B02"}, 3)  # doctest: +NORMALIZE_WHITESPACE
    {'Metadata_ImageNumber': 3, 'Metadata_sample_id': 's1', 'Metadata_label': 'a',
     'Metadata_group': 'p1', 'Metadata_Plate': None, 'Metadata_Well': 'B02', 'Metadata_Site': None}
    """
    meta = {"Metadata_ImageNumber": int(image_number), "Metadata_sample_id": str(sample_id),
            "Metadata_label": label, "Metadata_group": group}
    for key, value in metadata_columns(metadata).items():  # Plate, Well, Site, ...
        meta.setdefault(key, value)
    return meta


def extract_sample(sample: Any, config: FeatureConfig, *, image_number: int = 1,
                   masks: SampleSegmentation | dict[str, np.ndarray] | None = None
                   ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Segment and measure one sample.

    Parameters
    ----------
    sample : datasets.Sample
        The image ``(C, H, W)`` and its metadata (``metadata["channel_names"]``).
    config : FeatureConfig
        Segmentation and measurement settings.
    image_number : int
        ``Metadata_ImageNumber`` written to both tables (1-based dataset position).
    masks : SampleSegmentation or dict, optional
        Precomputed label images per object type (skips segmentation); a plain dict's QC
        columns count its objects and discard nothing.

    Returns
    -------
    cells : pd.DataFrame
        One row per object with the ``Metadata_*`` columns of docs/CONTRACTS.md.
    image_row : pd.DataFrame
        One row: the per-image aggregation (``Metadata_Object_Count`` 0 when no cells) and
        the segmentation QC columns (:data:`QC_COLUMNS`).
    """
    names = _channel_names(sample)
    # float32 [0, 1], the one full copy of the decoded image: segmentation reads each plane it
    # needs in float64 and the measurements compute in float64 (same numbers as a float64 copy,
    # half its memory)
    image = sample.float_image
    if masks is None:
        masks = identify_sample(image, names, config, sample.id)
    elif not isinstance(masks, SampleSegmentation):
        primary = masks.get("Nuclei", masks.get("Cells"))
        masks = SampleSegmentation(masks, _qc(primary, int(len(np.unique(primary[primary > 0]))),
                                              0, 0, 0, float((primary > 0).mean())))
    qc = masks.qc
    cells = measure_sample(image, names, masks.masks, config, _scale_max(sample.image))
    meta = image_metadata(sample.id, sample.label, sample.group, sample.metadata, image_number)
    for key, value in reversed(list(meta.items())):
        cells.insert(0, key, value)
    cells["Metadata_ObjectNumber"] = cells["Metadata_ObjectNumber"].astype(np.int64)
    row = aggregate(cells, meta)
    for k, column in enumerate(QC_COLUMNS):
        row.insert(len(meta) + 1 + k, column, float(qc[column]))
    return cells, row
