"""Per-object CellProfiler measurements through cp_measure, named in CellProfiler form.

Each family function takes one label image (and pixels) and returns ``dict[str, ndarray]``
keyed by the full column name ``{Object}_{Family}_{Feature}_{Channel}[_...]`` with one value
per label ``1..n`` of the sanitised mask. Values are exactly cp_measure's: we call its
functions on the same arrays, and only rename keys; the exceptions are Texture
(:mod:`features.texture`, sparse co-occurrence) and Costes (:mod:`features.costes`, same
bisection with a lean Pearson), both parity-tested against cp_measure. Channel-independent families (AreaShape,
Zernike, Feret) run once per object type, not once per channel, and correlations run once per
unordered channel pair (cp_measure returns both directions of Manders/RWC/Costes at once).
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Sequence

import numpy as np
from cp_measure._sanitize import sanitize_masks
from cp_measure.bulk import get_core_measurements, get_correlation_measurements

from .config import FeatureConfig
from .costes import get_correlation_costes
from .texture import get_texture

_CORE = get_core_measurements()
_CORR = get_correlation_measurements()


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


def measure_shape(obj: str, masks: np.ndarray, families: Sequence[str]) -> dict[str, np.ndarray]:
    """AreaShape (+ Zernike, Feret when selected) of a sanitised label image ``(H, W)``."""
    out: dict[str, np.ndarray] = {}
    parts = [("AreaShape", "sizeshape"), ("Zernike", "zernike"), ("Feret", "feret")]
    for family, func in parts:
        if family in families:
            for key, values in _CORE[func](masks, None).items():
                out[_shape_name(obj, key)] = np.asarray(values, dtype=np.float64)
    return out


def measure_channel(obj: str, masks: np.ndarray, pixels: np.ndarray, channel: str,
                    families: Sequence[str], scales: Sequence[int],
                    gray_levels: int) -> dict[str, np.ndarray]:
    """Intensity, Texture, Granularity, RadialDistribution of one channel ``(H, W)`` float."""
    out: dict[str, np.ndarray] = {}
    calls = []
    if "Intensity" in families:
        calls.append(("intensity", {}, _intensity_name))
    if "Texture" in families:
        calls += [("texture", {"scale": s, "gray_levels": gray_levels}, _texture_name) for s in scales]
    if "Granularity" in families:
        calls.append(("granularity", {}, _granularity_name))
    if "RadialDistribution" in families:
        calls += [("radial_distribution", {}, _radial_name), ("radial_zernikes", {}, _radial_name)]
    for func, kwargs, namer in calls:
        # our sparse Haralick equals cp_measure's to ~1e-11 and is several times faster
        measure = get_texture if func == "texture" else _CORE[func]
        for key, values in measure(masks, pixels, **kwargs).items():
            out[namer(obj, key, channel)] = np.asarray(values, dtype=np.float64)
    return out


def measure_correlation(obj: str, masks: np.ndarray, first: np.ndarray, second: np.ndarray,
                        names: tuple[str, str], scale_max: int) -> dict[str, np.ndarray]:
    """Pearson/Slope, Manders, RWC and Costes of one channel pair, both directions."""
    a, b = names
    out: dict[str, np.ndarray] = {}
    for func in ("pearson", "manders_fold", "rwc", "costes"):
        if func == "costes":    # same bisection as cp_measure without scipy's per-call overhead
            result = get_correlation_costes(first, second, masks, scale_max=scale_max)
        else:
            result = _CORR[func](first, second, masks)
        for key, values in result.items():
            feature = key.split("_", 1)[1]
            if feature.endswith("_2"):
                name = f"{obj}_Correlation_{feature[:-2]}_{b}_{a}"
            elif feature.endswith("_1"):
                name = f"{obj}_Correlation_{feature[:-2]}_{a}_{b}"
            else:
                name = f"{obj}_Correlation_{feature}_{a}_{b}"
            out[name] = np.asarray(values, dtype=np.float64)
    return out


def measure_objects(obj: str, labels: np.ndarray, image: np.ndarray, channels: Sequence[str],
                    config: FeatureConfig, *, scale_max: int = 255) -> tuple[np.ndarray, dict]:
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
        Families, texture scales and gray levels.
    scale_max : int
        Maximum of the original integer scale, used by Costes' threshold search.

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
        features.update(measure_shape(obj, clean, families))
        for c, name in enumerate(channels):
            features.update(measure_channel(obj, clean, image[c], name, families,
                                            config.active_scales, config.texture_gray_levels))
        if "Correlation" in families:
            for i, j in itertools.combinations(range(len(channels)), 2):
                features.update(measure_correlation(obj, clean, image[i], image[j],
                                                    (channels[i], channels[j]), scale_max))
    return ids, features


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
        a, b = parts[1], parts[2]
        feature = key.split("_", 1)[1]
        if feature.endswith("_2"):
            return f"{obj}_Correlation_{feature[:-2]}_{b}_{a}"
        if feature.endswith("_1"):
            return f"{obj}_Correlation_{feature[:-2]}_{a}_{b}"
        return f"{obj}_Correlation_{feature}_{a}_{b}"
    channel = parts[1]
    if key.startswith(("Intensity_", "Location_")):
        return _intensity_name(obj, key, channel)
    if key.startswith("Granularity_"):
        return _granularity_name(obj, key, channel)
    if key.startswith("RadialDistribution_"):
        return _radial_name(obj, key, channel)
    return _texture_name(obj, key, channel)
