"""Configuration of the feature extraction (a frozen dataclass, YAML-loadable)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cellcompare.config import ConfigError, build, load_yaml, to_plain

from .conventions import CONVENTIONS, DEFAULT_CONVENTION, RECORDED_BEFORE, Convention
from .threshold import Threshold, ThresholdError

FAMILIES = ("AreaShape", "Intensity", "Texture", "Correlation", "Granularity",
            "RadialDistribution", "Zernike", "Feret", "Neighbors")
PRESETS: dict[str, tuple[str, ...]] = {
    "minimal": ("AreaShape", "Intensity"),
    "standard": ("AreaShape", "Intensity", "Texture", "Correlation"),
    "full": FAMILIES,
}
OBJECTS = ("Nuclei", "Cells", "Cytoplasm")
DTYPES = ("float32", "float64")


class FeatureConfigError(ConfigError):
    """A feature configuration value is invalid."""


@dataclass(frozen=True)
class FeatureConfig:
    """How to segment and measure one dataset.

    Parameters
    ----------
    preset : str
        ``minimal`` (AreaShape + Intensity), ``standard`` (+ Texture at the first scale,
        Correlation) or ``full`` (every family, all texture scales).
    families : tuple of str or None
        Explicit families, overriding the preset's.
    texture_scales : tuple of int
        Haralick co-occurrence distances; ``standard`` uses only the first.
    texture_gray_levels : int
        Gray levels of the co-occurrence matrix.
    neighbor_distance : int
        Radius in pixels of the Neighbors family's "within a distance" scale (besides
        ``Adjacent``); CellProfiler's default is 5.
    channels : tuple of str or None
        Channels to measure (names from the dataset); ``None`` measures all.
    dna_channel, cyto_channel : str or None
        Channel names used to segment nuclei and cells. ``None`` chooses them from the data
        (:func:`features.plan.resolve_segmentation`): the nucleus channel by name (DNA, DAPI,
        Hoechst, ...), else by signal (the channel whose foreground stands out most); the
        cytoplasm channel by name (Actin, Cells, ...), else the first other channel. With
        ``whole_object=True`` only one object type (``Cells``) is segmented as the largest
        foreground component.
    objects : tuple of str
        Object types measured among ``Nuclei``, ``Cells``, ``Cytoplasm``.
    diameter : (float, float) or None
        Typical nucleus diameter ``[min, max]`` in pixels, as CellProfiler's
        IdentifyPrimaryObjects asks for it: it sets the smoothing, the declumping seeds'
        spacing and the size filter (objects outside the range are discarded and counted).
        ``None`` estimates it from a seeded sample of images.
    threshold_method : {"minimum_cross_entropy", "otsu"}
        Automatic threshold (CellProfiler's default is minimum cross-entropy).
    threshold_classes : {2, 3}
        Three-class Otsu puts the middle class on ``threshold_middle``'s side.
    threshold_middle : {"background", "foreground"}
        Side of the middle class with three classes.
    threshold_strategy : {"global", "adaptive"}
        One threshold per image, or per ``adaptive_window`` tile (uneven illumination).
    adaptive_window : int or None
        Tile size of the adaptive strategy; ``None`` is twice the largest diameter, at least 50.
    smoothing_sigma, min_area, max_area : float or None
        Override the diameter's smoothing and size filter (``None`` derives them from it).
    declump, exclude_border :
        Nucleus segmentation parameters (see :func:`features.segmentation.identify_nuclei`).
    masks : dict or None
        Bring your own label images instead of segmenting: ``{object: source}`` with object
        ``Nuclei`` and/or ``Cells`` and source a path template relative to the dataset root
        (``masks/{sample_id}_nuclei.png``; fields ``sample_id``, ``stem`` of the sample's first
        file and its metadata such as ``plate``, ``well``, ``site``) or ``loaddata`` for
        LoadData's ``ObjectsFileName_{object}``/``ObjectsPathName_{object}`` columns.
    cell_threshold_scale, regularization :
        Cell segmentation parameters (see :func:`features.segmentation.segment_cells`).
    whole_object : bool
        Treat each image as one object (e.g. embryo images).
    qc_samples : int
        Number of first images whose label images are written to ``qc/``.
    dtype : {"float32", "float64"}
        Storage type of the feature values in the shards (float32 halves the files; the
        measurements are computed in float64 either way). Recorded in ``manifest.json``; a
        resume with another ``dtype`` is refused.
    conventions : {"cellprofiler4", "cp_measure"}
        Quantile definition of the Intensity quartiles, median and MAD
        (:mod:`features.conventions`): CellProfiler 4's ``n q`` (cp_measure's ``legacy=True``),
        the default because users compare with CellProfiler's tables, or cp_measure's default
        ``(n - 1) q``. Recorded in the manifest; resuming under another one is refused.
    """

    preset: str = "standard"
    families: tuple[str, ...] | None = None
    texture_scales: tuple[int, ...] = (3,)
    texture_gray_levels: int = 256
    neighbor_distance: int = 5
    channels: tuple[str, ...] | None = None
    dna_channel: str | None = None
    cyto_channel: str | None = None
    objects: tuple[str, ...] = OBJECTS
    diameter: tuple[float, float] | None = None
    threshold_method: str = "minimum_cross_entropy"
    threshold_classes: int = 2
    threshold_middle: str = "background"
    threshold_strategy: str = "global"
    adaptive_window: int | None = None
    smoothing_sigma: float | None = None
    min_area: float | None = None
    max_area: float | None = None
    declump: str = "intensity"
    exclude_border: bool = False
    masks: dict[str, str] | None = None
    cell_threshold_scale: float = 0.5
    regularization: float = 0.05
    whole_object: bool = False
    qc_samples: int = 4
    dtype: str = "float32"
    conventions: str = DEFAULT_CONVENTION

    def __post_init__(self) -> None:
        if self.preset not in PRESETS:
            raise FeatureConfigError(f"preset must be one of {sorted(PRESETS)}, got {self.preset!r}")
        for fam in self.active_families:
            if fam not in FAMILIES:
                raise FeatureConfigError(f"unknown feature family {fam!r}; expected one of {FAMILIES}")
        for obj in self.objects:
            if obj not in OBJECTS:
                raise FeatureConfigError(f"unknown object type {obj!r}; expected one of {OBJECTS}")
        if not self.texture_scales:
            raise FeatureConfigError("texture_scales must hold at least one distance")
        if self.neighbor_distance < 1:
            raise FeatureConfigError(f"neighbor_distance must be >= 1 pixel, got {self.neighbor_distance}")
        if self.diameter is not None:
            d = self.diameter
            if len(d) != 2 or not 0 < float(d[0]) <= float(d[1]):
                raise FeatureConfigError(f"diameter must be [min, max] pixels with 0 < min <= max, got {list(d)}")
        try:
            self.threshold
        except ThresholdError as exc:
            raise FeatureConfigError(str(exc)) from None
        if self.dtype not in DTYPES:
            raise FeatureConfigError(f"dtype must be one of {DTYPES}, got {self.dtype!r}")
        if self.conventions not in CONVENTIONS:
            raise FeatureConfigError(f"conventions must be one of {sorted(CONVENTIONS)}, "
                                     f"got {self.conventions!r}")
        for obj in self.masks or {}:
            if obj not in ("Nuclei", "Cells"):
                raise FeatureConfigError(f"masks: object {obj!r} must be 'Nuclei' or 'Cells'")

    @property
    def threshold(self) -> Threshold:
        """The nucleus threshold these settings describe."""
        window = self.adaptive_window
        if window is None:
            window = max(50, int(2 * float(self.diameter[1]))) if self.diameter else 50
        return Threshold(method=self.threshold_method, classes=self.threshold_classes,
                         middle=self.threshold_middle, strategy=self.threshold_strategy,
                         window=window)

    @property
    def convention(self) -> Convention:
        """The :class:`~.conventions.Convention` named by ``conventions``."""
        return CONVENTIONS[self.conventions]

    @property
    def active_families(self) -> tuple[str, ...]:
        """Families measured: ``families`` if given, else the preset's."""
        return tuple(self.families) if self.families is not None else PRESETS[self.preset]

    @property
    def active_scales(self) -> tuple[int, ...]:
        """Texture scales measured: all for ``full``, else only the first."""
        return tuple(self.texture_scales) if self.preset == "full" else tuple(self.texture_scales[:1])

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str | Path | None = None,
                  where: str = "") -> "FeatureConfig":
        """Build from a mapping (lists become tuples); unknown keys raise ``UnknownKeyError``."""
        return build(cls, data, where=where, source=source)

    @classmethod
    def from_record(cls, data: dict[str, Any], *, source: str | Path | None = None) -> "FeatureConfig":
        """Build from a recorded configuration (a manifest's, a model directory's); one recorded
        before ``conventions`` existed measured with cp_measure's (``RECORDED_BEFORE``)."""
        return cls.from_dict({"conventions": RECORDED_BEFORE, **data}, source=source)

    @classmethod
    def from_yaml(cls, path: str | Path) -> "FeatureConfig":
        """Load from a YAML file holding a mapping (optionally under a ``features:`` key)."""
        return load_yaml(cls, path, section="features")

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (tuples as lists), for the manifest."""
        return to_plain(self)
