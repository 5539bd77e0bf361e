"""The whole comparison run's configuration: frozen dataclasses loaded from YAML in one place.

``load_config(None)`` is the embedded demo (a synthetic Cell Painting dataset, four models).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

import yaml

__all__ = ["MODEL_KINDS", "ConfigError", "CompareConfig", "DatasetSection", "FoldsConfig",
           "ModelSpec", "SynthConfig", "load_config", "DEMO_CONFIG"]

#: Model name -> "classical" | "deep".
MODEL_KINDS: dict[str, str] = {"svm": "classical", "linear_svm": "classical",
                               "xgboost": "classical", "resnet18": "deep", "smallcnn": "deep"}


class ConfigError(ValueError):
    """A configuration value is missing, unknown or out of range; the message names the key."""


def _check_keys(cls: type, data: Mapping[str, Any], where: str) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping, found {type(data).__name__}")
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown}; expected some of {sorted(known)}")
    return dict(data)


def _tuple(value: Any, key: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        return (value,)
    if not isinstance(value, (list, tuple)):
        raise ConfigError(f"{key}: expected a list of names, found {value!r}")
    return tuple(str(v) for v in value)


@dataclass(frozen=True)
class SynthConfig:
    """Synthetic dataset written when ``dataset.path`` does not exist (the embedded demo)."""

    kind: str = "cellpainting"
    classes: int = 4
    per_class: int = 12
    size: int = 256
    plates: int = 3
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in ("cellpainting", "stages"):
            raise ConfigError(f"dataset.synth.kind must be 'cellpainting' or 'stages', found {self.kind!r}")
        for key in ("classes", "per_class", "plates"):
            if getattr(self, key) < 1:
                raise ConfigError(f"dataset.synth.{key} must be >= 1, found {getattr(self, key)}")
        if self.size < 32:
            raise ConfigError(f"dataset.synth.size must be >= 32, found {self.size}")


@dataclass(frozen=True)
class DatasetSection:
    """Where the images are, which classes and channels to use, how to open them."""

    path: str = "demo_data/cellpainting"
    layout: str = "auto"
    include_classes: tuple[str, ...] | None = None
    exclude_classes: tuple[str, ...] = ()
    channels: tuple[str, ...] | None = None
    on_error: str = "raise"
    options: dict[str, Any] = field(default_factory=dict)
    synth: SynthConfig | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "DatasetSection":
        """Build from the ``dataset:`` mapping."""
        data = _check_keys(cls, data, "dataset")
        if "path" in data:
            data["path"] = str(data["path"])
        for key in ("include_classes", "channels"):
            if key in data:
                data[key] = _tuple(data[key], f"dataset.{key}")
        data["exclude_classes"] = _tuple(data.get("exclude_classes"), "dataset.exclude_classes") or ()
        if data.get("synth") is not None:
            data["synth"] = SynthConfig(**_check_keys(SynthConfig, data["synth"], "dataset.synth"))
        if data.get("layout", "auto") not in ("auto", "rxrx1", "folders", "channelsets"):
            raise ConfigError(f"dataset.layout must be auto, rxrx1, folders or channelsets, "
                              f"found {data['layout']!r}")
        if data.get("on_error", "raise") not in ("raise", "skip"):
            raise ConfigError(f"dataset.on_error must be 'raise' or 'skip', found {data['on_error']!r}")
        return cls(**data)


@dataclass(frozen=True)
class ModelSpec:
    """One model of the comparison.

    Attributes
    ----------
    name : str
        One of :data:`MODEL_KINDS` (or a name added with ``comparison.models.register_model``).
    label : str
        Name in the results (defaults to ``name``; set it to run one model twice).
    granularity : str
        ``image`` or ``cell`` (classical models only).
    params : dict
        Passed to ``classical.make_classifier`` or ``deep.DeepConfig.from_dict``. For deep
        models ``weights: auto`` means ImageNet when cached, else ``none`` (logged and reported).
    """

    name: str
    label: str = ""
    granularity: str = "image"
    params: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | str, where: str = "models[]") -> "ModelSpec":
        """Build from ``{name: svm, granularity: image, params: {...}}`` or a bare name.

        Keys other than ``name``, ``label``, ``granularity`` and ``params`` are taken as params.
        """
        from comparison.models import registered_names

        if isinstance(data, str):
            data = {"name": data}
        if not isinstance(data, Mapping) or "name" not in data:
            raise ConfigError(f"{where}: each model needs a 'name' (one of {registered_names()})")
        data = dict(data)
        name = str(data.pop("name"))
        if name not in registered_names():
            raise ConfigError(f"{where}: unknown model name {name!r}; valid names are {registered_names()}")
        label = str(data.pop("label", "") or name)
        granularity = str(data.pop("granularity", "image"))
        if granularity not in ("image", "cell"):
            raise ConfigError(f"{where}.granularity must be 'image' or 'cell', found {granularity!r}")
        params = dict(data.pop("params", None) or {})
        params.update(data)
        return cls(name=name, label=label, granularity=granularity, params=params)


@dataclass(frozen=True)
class FoldsConfig:
    """Cross-validation: ``n_splits`` folds, optionally grouped, and an optional hold-out."""

    n_splits: int = 5
    group_column: str | None = None
    holdout_fraction: float = 0.0

    def __post_init__(self) -> None:
        if self.n_splits < 2:
            raise ConfigError(f"folds.n_splits must be >= 2, found {self.n_splits}")
        if not 0.0 <= self.holdout_fraction < 0.5:
            raise ConfigError(f"folds.holdout_fraction must be in [0, 0.5), found {self.holdout_fraction}")


@dataclass(frozen=True)
class CompareConfig:
    """Everything a comparison run needs (see ``configs/*.yaml``)."""

    dataset: DatasetSection = field(default_factory=DatasetSection)
    features: dict[str, Any] = field(default_factory=lambda: {"preset": "standard"})
    models: tuple[ModelSpec, ...] = ()
    folds: FoldsConfig = field(default_factory=FoldsConfig)
    top_k: int = 3
    seed: int = 0
    output: str = "results/demo"
    jobs: int = 1
    feature_importance: str = "gain"
    report: bool = True
    export_models: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.models:
            raise ConfigError("models: at least one model is needed")
        labels = [m.label for m in self.models]
        dupes = sorted({x for x in labels if labels.count(x) > 1})
        if dupes:
            raise ConfigError(f"models: labels {dupes} appear twice; give each a distinct 'label'")
        if self.top_k < 1:
            raise ConfigError(f"top_k must be >= 1, found {self.top_k}")
        if self.feature_importance not in ("gain", "permutation", "none"):
            raise ConfigError(f"feature_importance must be 'gain', 'permutation' or 'none', "
                              f"found {self.feature_importance!r}")
        if self.jobs < 1:
            raise ConfigError(f"jobs must be >= 1, found {self.jobs}")
        unknown = [x for x in self.export_models if x not in labels]
        if unknown:
            raise ConfigError(f"export_models: {unknown} name no configured model; valid labels "
                              f"are {labels}")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "CompareConfig":
        """Build and validate from a plain mapping (as loaded from YAML)."""
        data = _check_keys(cls, data, "config")
        if "dataset" in data:
            data["dataset"] = DatasetSection.from_dict(data["dataset"] or {})
        if "folds" in data:
            data["folds"] = FoldsConfig(**_check_keys(FoldsConfig, data["folds"] or {}, "folds"))
        if "features" in data:
            data["features"] = dict(_check_features(data["features"]))
        if "models" in data:
            if not isinstance(data["models"], (list, tuple)):
                raise ConfigError(f"models: expected a list, found {type(data['models']).__name__}")
            data["models"] = tuple(ModelSpec.from_dict(m, f"models[{i}]")
                                   for i, m in enumerate(data["models"]))
        if "output" in data:
            data["output"] = str(data["output"])
        if "export_models" in data:
            data["export_models"] = _tuple(data["export_models"], "export_models") or ()
        return cls(**data)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict (YAML-serialisable) form; tuples become lists."""
        return _plain(dataclasses.asdict(self))

    def replace(self, **changes: Any) -> "CompareConfig":
        """A copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)


def _check_features(value: Any) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"features: expected a mapping, found {type(value).__name__}")
    try:
        from features import FeatureConfig
    except ImportError:  # features/ absent: validated when the run needs it
        return value
    try:
        FeatureConfig.from_dict(dict(value))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"features: {exc}") from exc
    return value


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


#: The embedded demo: 4 classes x 12 sites at 256 px over 3 plates, folds held out by plate.
DEMO_CONFIG: dict[str, Any] = {
    "dataset": {"path": "demo_data/cellpainting", "layout": "rxrx1",
                "synth": {"kind": "cellpainting", "classes": 4, "per_class": 12, "size": 256,
                          "plates": 3, "seed": 0}},
    "features": {"preset": "minimal", "dna_channel": "DNA", "cyto_channel": "Actin"},
    "models": [
        {"name": "svm", "params": {"normalize": "plate_robust", "mi_top_k": 20}},
        {"name": "xgboost", "params": {"normalize": "plate_robust"}},
        {"name": "resnet18", "params": {"weights": "auto", "image_size": 128, "epochs": 15,
                                        "batch_size": 16, "lr": 3e-3, "patience": 12,
                                        "amp": False, "progress": False}},
        {"name": "smallcnn", "params": {"weights": "none", "image_size": 128, "epochs": 12,
                                        "batch_size": 16, "lr": 3e-3, "patience": 12,
                                        "amp": False, "progress": False}},
    ],
    "folds": {"n_splits": 3, "group_column": "group"},
    "top_k": 2,
    "seed": 0,
    "jobs": 2,
    "output": "results/demo",
    "export_models": ["xgboost"],
}


def load_config(path: str | Path | None = None, **overrides: Any) -> CompareConfig:
    """Load a YAML configuration; ``None`` gives the embedded demo.

    Parameters
    ----------
    path : str or Path, optional
        YAML file with the keys of :class:`CompareConfig` (``dataset``, ``features``, ``models``,
        ``folds``, ``top_k``, ``seed``, ``output``...). Missing keys take the demo's values,
        except ``export_models`` when the file lists its own ``models`` (then none).
    **overrides
        Top-level keys replacing the file's (e.g. ``output=``).

    Returns
    -------
    CompareConfig

    Raises
    ------
    ConfigError
        Naming the key that is unknown or invalid (and the file).
    """
    data: dict[str, Any] = {k: v for k, v in DEMO_CONFIG.items()}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file {path} does not exist")
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        if not isinstance(loaded, Mapping):
            raise ConfigError(f"{path}: expected a mapping at the top level, found {type(loaded).__name__}")
        data.update(loaded)
        if "dataset" in loaded and "synth" not in (loaded["dataset"] or {}):
            data["dataset"] = dict(loaded["dataset"] or {})  # no demo synth for a user's dataset
        if "models" in loaded and "export_models" not in loaded:
            data["export_models"] = []  # the demo's exports name the demo's models
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return CompareConfig.from_dict(data)
    except ConfigError as exc:
        if path is not None:
            raise ConfigError(f"{path}: {exc}") from exc
        raise
