"""Per-object CellProfiler measurements, named in CellProfiler form, equal to cp_measure's.

Each family returns ``dict[str, ndarray]`` keyed by the full column name
``{Object}_{Family}_{Feature}_{Channel}[_...]`` with one value per label ``1..n`` of the
sanitised mask. Feret calls the centrosome functions cp_measure calls, on the convex hulls
of the objects' outline pixels (``grouping.ObjectLayout.hull``), which Zernike's enclosing
circles share.
Our own
implementations, each parity-tested against cp_measure to 1e-6 relative, are: AreaShape
(:mod:`features.shape`, one compiled pass over the object boxes), Intensity
(:mod:`features.intensity`), Texture (:mod:`features.texture`), Correlation with Costes
(:mod:`features.correlation`, one compiled pass per channel pair), RadialDistribution
(:mod:`features.radial`, label geometry once per object type), Zernike and radial Zernikes
(:mod:`features.zernike`, one basis and one pass per object type) and Granularity
(:mod:`features.granularity`, the opening series once per channel, shared by object types).
Neighbors (:mod:`features.neighbors`) follows CellProfiler's module (cp_measure has none).
Channel-independent families run once per object type, and correlations once per unordered
channel pair (both directions of Manders/RWC/Costes at once).
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Sequence

import numpy as np
from centrosome.cpmorphology import feret_diameter
from cp_measure._sanitize import sanitize_masks

from .config import FeatureConfig
from .conventions import CONVENTIONS, DEFAULT_CONVENTION, Convention
from .correlation import correlate_pairs
from .granularity import granularity, spectrum
from .grouping import ObjectLayout
from .intensity import intensity, object_edges
from .neighbors import measure_neighbors
from .radial import radial_distribution, radial_geometry
from .shape import area_shape
from .texture import get_texture
from .zernike import (
    ZernikeSums,
    radial_zernikes,
    shape_zernikes,
    zernike_basis,
    zernike_sums,
)


def _shape_name(obj: str, key: str) -> str:
    return f"{obj}_AreaShape_{key}"


def _intensity_name(obj: str, key: str, channel: str) -> str:
    family, feature = key.split("_", 1)          # Intensity_* or Location_*
    return f"{obj}_{family}_{feature}_{channel}"


def _texture_name(obj: str, key: str, channel: str) -> str:
    feature, scale, direction, levels = key.rsplit("_", 3)
    return f"{obj}_Texture_{feature}_{channel}_{scale}_{direction}_{levels}"


def _granularity_name(obj: str, key: str, channel: str) -> str:
    return f"{obj}_{key}_{channel}"               # Granularity_{n}_{channel}


def _radial_name(obj: str, key: str, channel: str) -> str:
    _, feature, rest = key.split("_", 2)         # RadialDistribution_FracAtD_1of4
    return f"{obj}_RadialDistribution_{feature}_{channel}_{rest}"


def measure_shape(obj: str, layout: ObjectLayout, families: Sequence[str],
                  zernikes: ZernikeSums | None = None) -> dict[str, np.ndarray]:
    """AreaShape (+ Zernike, Feret when selected) of a sanitised label image.

    ``zernikes`` (:func:`features.zernike.zernike_sums` over the labels) are computed when
    needed and not given.
    """
    masks = layout.labels
    out: dict[str, np.ndarray] = {}
    if "AreaShape" in families:
        out.update({_shape_name(obj, key): v for key, v in area_shape(masks, layout.boxes).items()})
    if "Zernike" in families:
        zernikes = zernikes if zernikes is not None else zernike_basis(masks, layout.hull)
        out.update({_shape_name(obj, key): v for key, v in shape_zernikes(zernikes).items()})
    if "Feret" in families:
        low, high = feret_diameter(*layout.hull, np.arange(1, layout.count + 1))
        out[_shape_name(obj, "MinFeretDiameter")] = np.asarray(low, dtype=np.float64)
        out[_shape_name(obj, "MaxFeretDiameter")] = np.asarray(high, dtype=np.float64)
    return out


def _correlation_name(obj: str, key: str, a: str, b: str) -> str:
    feature = key.split("_", 1)[1]
    if feature.endswith("_2"):
        return f"{obj}_Correlation_{feature[:-2]}_{b}_{a}"
    if feature.endswith("_1"):
        return f"{obj}_Correlation_{feature[:-2]}_{a}_{b}"
    return f"{obj}_Correlation_{feature}_{a}_{b}"


def _named(obj: str, channel: str, result: dict, namer) -> dict[str, np.ndarray]:
    return {namer(obj, key, channel): np.asarray(v, dtype=np.float64) for key, v in result.items()}


def _neighbors(obj: str, masks: np.ndarray, ids: np.ndarray, distance: int) -> dict[str, np.ndarray]:
    out = {f"{obj}_{key}": v for key, v in measure_neighbors(masks, distance=distance).items()}
    number = f"{obj}_Neighbors_FirstClosestObjectNumber_Adjacent"
    closest = out[number].astype(np.int64)            # sanitised number -> original label
    out[number] = np.where(closest > 0, ids[np.maximum(closest - 1, 0)], 0).astype(np.float64)
    return out


def measure_channels(obj: str, layout: ObjectLayout, image: np.ndarray, channels: Sequence[str],
                     families: Sequence[str], scales: Sequence[int], gray_levels: int,
                     spectra: list | None = None,
                     zernikes: ZernikeSums | None = None, *,
                     convention: Convention = CONVENTIONS[DEFAULT_CONVENTION]) -> dict[str, np.ndarray]:
    """Intensity, Texture, Granularity, RadialDistribution of every channel of ``image`` ``(C, H, W)``.

    Label geometry (radial rings and Zernike basis, the granularity operator) is computed
    once for all channels; ``spectra`` (one :class:`features.granularity.Spectrum` per
    channel) may be passed in so that object types share them, and ``zernikes`` (the
    Zernike sums of the labels over ``image``) so that AreaShape's Zernikes share their pass.
    ``convention`` is the quantile definition of the Intensity order statistics.
    """
    masks = layout.labels
    per_channel: list[dict[str, np.ndarray]] = [{} for _ in channels]
    if "Intensity" in families:
        results = intensity(layout.groups, object_edges(layout.groups, masks), image,
                            convention=convention)
        for c, name in enumerate(channels):
            per_channel[c].update(_named(obj, name, results[c], _intensity_name))
    if "Texture" in families:
        for c, name in enumerate(channels):
            for s in scales:
                texture = get_texture(masks, image[c], s, gray_levels, boxes=layout.boxes)
                per_channel[c].update(_named(obj, name, texture, _texture_name))
    if "Granularity" in families:
        spectra = spectra if spectra is not None else _spectra(image)
        for c, result in enumerate(granularity(masks, spectra, layout.groups)):
            per_channel[c].update(_named(obj, channels[c], result, _granularity_name))
    if "RadialDistribution" in families:
        geom = radial_geometry(masks, layout.boxes)
        radial = radial_zernikes(zernikes if zernikes is not None
                                 else zernike_basis(masks, layout.hull), image)
        for c, name in enumerate(channels):
            per_channel[c].update(_named(obj, name, radial_distribution(geom, image[c]), _radial_name))
            per_channel[c].update(_named(obj, name, radial[c], _radial_name))
    out: dict[str, np.ndarray] = {}
    for feats in per_channel:
        out.update(feats)
    return out


def measure_correlations(obj: str, layout: ObjectLayout, image: np.ndarray, channels: Sequence[str],
                         scale_max: int) -> dict[str, np.ndarray]:
    """Pearson/Slope, Manders, RWC and Costes of every unordered channel pair, both directions."""
    pairs = list(itertools.combinations(range(len(channels)), 2))
    out: dict[str, np.ndarray] = {}
    for (i, j), result in zip(pairs, correlate_pairs(layout.groups, image, pairs,
                                                     scale_max=scale_max)):
        for key, values in result.items():
            out[_correlation_name(obj, key, channels[i], channels[j])] = values
    return out


def measure_objects(obj: str, labels: np.ndarray, image: np.ndarray, channels: Sequence[str],
                    config: FeatureConfig, *, scale_max: int = 255,
                    spectra: list | None = None) -> tuple[np.ndarray, dict]:
    """Measure every selected family of one object type over all channels.

    Parameters
    ----------
    obj : str
        Object name used as column prefix (``Nuclei``, ``Cells``, ``Cytoplasm``).
    labels : np.ndarray
        ``(H, W)`` integer label image (labels need not be consecutive).
    image : np.ndarray
        ``(C, H, W)`` float image in [0, 1], channel order as ``channels``.
    channels : sequence of str
        Names of the channels of ``image``.
    config : FeatureConfig
        Families, texture scales, gray levels and the order-statistics ``conventions``.
    scale_max : int
        Maximum of the original integer scale, used by Costes' threshold search.
    spectra : list, optional
        Granularity opening series of ``image``'s channels (:func:`image_spectra`), shared
        by the object types of one image; computed here when ``None``.

    Returns
    -------
    ids : np.ndarray
        Original label of each measured object, ascending.
    features : dict[str, np.ndarray]
        Column name → one value per object of ``ids``.
    """
    clean, ids = sanitize_masks(labels)
    ids = np.asarray(ids)
    if ids.size == 0:
        return ids, {}
    families = config.active_families
    features: dict[str, np.ndarray] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        layout = ObjectLayout(clean)    # grouping, boxes and hulls shared by the families
        zernikes = (zernike_sums(zernike_basis(clean, layout.hull), image)
                    if {"Zernike", "RadialDistribution"} <= set(families) else None)
        features.update(measure_shape(obj, layout, families, zernikes))
        if "Neighbors" in families:
            features.update(_neighbors(obj, clean, ids, config.neighbor_distance))
        features.update(measure_channels(obj, layout, image, channels, families,
                                         config.active_scales, config.texture_gray_levels,
                                         spectra, zernikes, convention=config.convention))
        if "Correlation" in families:
            features.update(measure_correlations(obj, layout, image, channels, scale_max))
    return ids, features


def image_spectra(image: np.ndarray, config: FeatureConfig) -> list | None:
    """Granularity opening series of each channel of ``image`` ``(C, H, W)``, or ``None``.

    The series depends only on the pixels, so one image's object types share it. It is
    computed in float64 whatever ``image``'s dtype (a float32 image gives the same numbers).
    """
    if "Granularity" not in config.active_families:
        return None
    return _spectra(image)


def _spectra(image: np.ndarray) -> list:
    return [spectrum(np.asarray(ch, dtype=np.float64)) for ch in image]  # one channel at a time


def featurize_column_name(obj: str, column: str) -> str:
    """Our column name for a column of :func:`cp_measure.featurizer.featurize`.

    ``featurize`` names columns ``key``, ``key__channel`` or ``key__ch1__ch2``; this maps
    them to CellProfiler form so parity tests and the benchmark can compare tables.
    """
    parts = column.split("__")
    key = parts[0]
    if len(parts) == 1:
        return _shape_name(obj, key)
    if len(parts) == 3:
        return _correlation_name(obj, key, parts[1], parts[2])
    channel = parts[1]
    if key.startswith(("Intensity_", "Location_")):
        return _intensity_name(obj, key, channel)
    if key.startswith("Granularity_"):
        return _granularity_name(obj, key, channel)
    if key.startswith("RadialDistribution_"):
        return _radial_name(obj, key, channel)
    return _texture_name(obj, key, channel)
