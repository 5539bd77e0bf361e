"""Configuration of the feature extraction (a frozen dataclass, YAML-loadable)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cellcompare.config import ConfigError, build, load_yaml, to_plain

FAMILIES = ("AreaShape", "Intensity", "Texture", "Correlation", "Granularity",
            "RadialDistribution", "Zernike", "Feret", "Neighbors")
PRESETS: dict[str, tuple[str, ...]] = {
    "minimal": ("AreaShape", "Intensity"),
    "standard": ("AreaShape", "Intensity", "Texture", "Correlation"),
    "full": FAMILIES,
}
OBJECTS = ("Nuclei", "Cells", "Cytoplasm")


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
        Channel names used to segment nuclei and cells; ``None`` picks the first channel
        (DNA) and the next one (cytoplasm). With ``whole_object=True`` only one object
        type (``Cells``) is segmented as the largest foreground component.
    objects : tuple of str
        Object types measured among ``Nuclei``, ``Cells``, ``Cytoplasm``.
    threshold_method, smoothing_sigma, min_area, max_area, declump, exclude_border :
        Nucleus segmentation parameters (see :func:`features.segmentation.segment_nuclei`).
    cell_threshold_scale, regularization :
        Cell segmentation parameters (see :func:`features.segmentation.segment_cells`).
    whole_object : bool
        Treat each image as one object (e.g. embryo images).
    qc_samples : int
        Number of first images whose label images are written to ``qc/``.
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
    threshold_method: str = "otsu"
    smoothing_sigma: float = 1.0
    min_area: int = 30
    max_area: int | None = None
    declump: str = "distance"
    exclude_border: bool = False
    cell_threshold_scale: float = 0.5
    regularization: float = 0.05
    whole_object: bool = False
    qc_samples: int = 4

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
    def from_yaml(cls, path: str | Path) -> "FeatureConfig":
        """Load from a YAML file holding a mapping (optionally under a ``features:`` key)."""
        return load_yaml(cls, path, section="features")

    def to_dict(self) -> dict[str, Any]:
        """Plain-JSON form (tuples as lists), for the manifest."""
        return to_plain(self)
