"""The ``dataset:`` section of a configuration: where the images are and how to open them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from cellcompare.config import ConfigError, build, load_yaml, name_tuple

from .base import UNLABELLED, ImageDataset
from .loader import LAYOUTS, open_dataset

__all__ = ["DatasetConfig", "SynthConfig"]


@dataclass(frozen=True)
class SynthConfig:
    """A synthetic dataset written when ``dataset.path`` does not exist (the embedded demo).

    Attributes
    ----------
    kind : {"cellpainting", "stages"}
        RxRx1-layout Cell Painting sites, or class folders of single-object stage images.
    classes, per_class : int
        Number of classes and images per class.
    size : int
        Side length in pixels (``stages`` images are ``size x size``).
    plates : int
        Plates of a ``cellpainting`` set (the usual fold groups).
    seed : int
        Random seed of the generator.
    controls : int
        Negative-control wells (label ``EMPTY``, untreated morphology) on every plate of a
        ``cellpainting`` set; ``normalize: controls`` standardises each plate by them.
    mitotic_fraction : float
        Share of mitotic cells of a ``cellpainting`` set (> 0 adds the marker channel ``w7``
        and per-cell truth; see ``make_cellpainting``).
    """

    kind: str = "cellpainting"
    classes: int = 4
    per_class: int = 12
    size: int = 256
    plates: int = 3
    seed: int = 0
    controls: int = 0
    mitotic_fraction: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in ("cellpainting", "stages"):
            raise ConfigError(f"dataset.synth.kind must be 'cellpainting' or 'stages', found {self.kind!r}")
        for key in ("classes", "per_class", "plates"):
            if getattr(self, key) < 1:
                raise ConfigError(f"dataset.synth.{key} must be >= 1, found {getattr(self, key)}")
        if not 0.0 <= self.mitotic_fraction < 1.0:
            raise ConfigError(f"dataset.synth.mitotic_fraction must be in [0, 1), found {self.mitotic_fraction}")
        if self.controls < 0:
            raise ConfigError(f"dataset.synth.controls must be >= 0, found {self.controls}")
        if self.size < 32:
            raise ConfigError(f"dataset.synth.size must be >= 32, found {self.size}")


@dataclass(frozen=True)
class DatasetConfig:
    """Where the images are, which classes and channels to use, how to open them.

    Attributes
    ----------
    path : str
        Dataset folder.
    layout : str
        ``"auto"``, ``"rxrx1"``, ``"folders"``, ``"channelsets"``, ``"pattern"`` (file-name
        pattern, ``options: {pattern: cellprofiler, channel_names: {d0: DNA}}``) or
        ``"loaddata"`` (CellProfiler LoadData CSV, ``options: {csv: ..., label_column: ...}``).
    include_classes, exclude_classes : tuple of str, optional
        Class filters.
    channels : tuple of str, optional
        Channels the models use (by name); ``None`` uses all.
    on_error : str
        ``"raise"`` or ``"skip"`` (log, record in ``ds.skipped`` and go on).
    unlabelled : str
        Samples with an empty label: ``"raise"`` (the default: a comparison needs labels),
        ``"drop"`` (logged, recorded in ``ds.skipped``) or ``"keep"``.
    options : dict
        Reader-specific keyword arguments (see :func:`open_dataset`).
    synth : SynthConfig, optional
        Write this synthetic dataset at ``path`` when ``path`` does not exist.
    """

    path: str = "demo_data/cellpainting"
    layout: str = "auto"
    include_classes: tuple[str, ...] | None = None
    exclude_classes: tuple[str, ...] = ()
    channels: tuple[str, ...] | None = None
    on_error: str = "raise"
    unlabelled: str = "raise"
    options: dict[str, Any] = field(default_factory=dict)
    synth: SynthConfig | None = None

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ConfigError(f"dataset.layout must be one of {list(LAYOUTS)}, found {self.layout!r}")
        if self.on_error not in ("raise", "skip"):
            raise ConfigError(f"dataset.on_error must be 'raise' or 'skip', found {self.on_error!r}")
        if self.unlabelled not in UNLABELLED:
            raise ConfigError(f"dataset.unlabelled must be one of {list(UNLABELLED)}, "
                              f"found {self.unlabelled!r}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, *, source: str | Path | None = None,
                  where: str = "dataset") -> "DatasetConfig":
        """Build from the ``dataset:`` mapping; a lone class or channel name is a list of one."""
        data = dict(data or {})
        if "path" in data:
            data["path"] = str(data["path"])
        for key in ("include_classes", "channels"):
            if key in data:
                data[key] = name_tuple(data[key], f"{where}.{key}")
        if "exclude_classes" in data:
            data["exclude_classes"] = name_tuple(data["exclude_classes"], f"{where}.exclude_classes") or ()
        return build(cls, data, where=where, source=source)

    @classmethod
    def from_yaml(cls, path: str | Path) -> "DatasetConfig":
        """Read a YAML file holding these keys (at the top level or under ``dataset:``)."""
        return load_yaml(cls, path, section="dataset")

    def open_options(self) -> dict[str, Any]:
        """The keyword arguments of :func:`open_dataset` (also recorded by feature extraction)."""
        return {"layout": self.layout, "include_classes": self.include_classes,
                "exclude_classes": self.exclude_classes, "on_error": self.on_error,
                "unlabelled": self.unlabelled, **self.options}

    def open(self) -> ImageDataset:
        """``open_dataset`` with this configuration (the folder must exist)."""
        return open_dataset(self.path, **self.open_options())
