"""The whole comparison run's configuration: frozen dataclasses built by ``cellcompare.config``.

``load_config(path)`` reads a YAML file; ``configs/demo.yaml`` is the embedded demo. Keys a file
leaves out take the dataclass defaults, which run.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

from cellcompare.classical.inputs import GRANULARITIES
from cellcompare.comparison.labels import LabelsConfig
from cellcompare.config import ConfigError, build, name_tuple, read_yaml, to_plain
from cellcompare.datasets.config import DatasetConfig

__all__ = ["CellTableConfig", "ConfigError", "CompareConfig", "FoldsConfig", "ModelSpec", "check_models",
           "load_config", "with_weights"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelSpec:
    """One model of the comparison.

    Attributes
    ----------
    name : str
        A name of the model registry (``comparison.adapters.registered_names()``).
    label : str
        Name in the results (defaults to ``name``; set it to run one model twice).
    granularity : str
        ``image`` or ``cell``: classical models read the per-image or per-cell feature table,
        deep models whole images or one crop per nucleus (``deep.crops``); for ``cell`` an
        image's probabilities are the mean of its cells'.
    params : dict
        Passed to ``classical.make_classifier`` or ``deep.DeepConfig.from_dict``. For deep
        models ``weights: auto`` means ImageNet when cached, else ``none`` (logged and reported).
    representation : str
        What a classical model reads (``comparison.representation``): ``cellprofiler`` (the
        extracted features), ``embeddings:imagenet`` or ``embeddings:ssl``.
    embedding : dict
        With an embeddings representation: ``comparison.representation.EmbeddingConfig``
        fields (``input``, ``cells_per_image``, ``weights``, ``ssl``...).
    """

    name: str
    label: str = ""
    granularity: str = "image"
    params: dict[str, Any] = field(default_factory=dict)
    representation: str = "cellprofiler"
    embedding: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | str, where: str = "models[]", *,
                  source: str | Path | None = None) -> "ModelSpec":
        """Build from ``{name: svm, granularity: image, params: {...}}`` or a bare name.

        Keys other than ``name``, ``label``, ``granularity``, ``params``, ``representation`` and
        ``embedding`` are taken as params.
        The params are checked against the model's estimator or config class
        (``comparison.adapters.check_params``: unknown keys as ``{where}.params.{key}``, deep
        values, weights on disk), so a typo stops the run when its configuration is read.
        """
        from cellcompare.comparison.adapters import check_params, registered_names

        prefix = f"{source}: " if source is not None else ""
        if isinstance(data, str):
            data = {"name": data}
        if not isinstance(data, Mapping) or "name" not in data:
            raise ConfigError(f"{prefix}{where}: each model needs a 'name' (one of {registered_names()})")
        data = dict(data)
        name = str(data.pop("name"))
        if name not in registered_names():
            raise ConfigError(f"{prefix}{where}: unknown model name {name!r}; valid names are {registered_names()}")
        label = str(data.pop("label", "") or name)
        granularity = str(data.pop("granularity", "image"))
        if granularity not in GRANULARITIES:
            raise ConfigError(f"{prefix}{where}.granularity must be one of {GRANULARITIES}, "
                              f"found {granularity!r}")
        representation = str(data.pop("representation", "cellprofiler"))
        embedding = data.pop("embedding", None) or {}
        if not isinstance(embedding, Mapping):
            raise ConfigError(f"{prefix}{where}.embedding: expected a mapping, found {type(embedding).__name__}")
        params = dict(data.pop("params", None) or {})
        params.update(data)
        check_params(name, granularity, params, where=f"{where}.params", source=source)
        spec = cls(name=name, label=label, granularity=granularity, params=params,
                   representation=representation, embedding=dict(embedding))
        spec.check_representation(where, source=source)
        return spec

    def check_representation(self, where: str = "models[]", *, source: str | Path | None = None) -> Any:
        """``comparison.representation.check_representation`` of this model: its
        ``EmbeddingConfig`` (``None`` for CellProfiler features); raises ``ConfigError``."""
        from cellcompare.comparison.adapters import model_kind
        from cellcompare.comparison.representation import check_representation

        return check_representation(self.name, model_kind(self.name), self.representation,
                                    self.embedding, where=where, source=source)


#: Models of a configuration that lists none: both approaches, default settings.
DEFAULT_MODELS: tuple[ModelSpec, ...] = (ModelSpec("svm", "svm"), ModelSpec("xgboost", "xgboost"),
                                         ModelSpec("resnet18", "resnet18"))


@dataclass(frozen=True)
class FoldsConfig:
    """Cross-validation: ``n_splits`` folds, optionally grouped, and an optional hold-out.

    ``group_column`` names an index column whose values never straddle folds; ``None`` (the
    default) keeps each well's sites together where wells repeat (a cell task: each image's
    cells); ``"none"`` (``comparison.labels.NO_GROUPS``) groups nothing.
    """

    n_splits: int = 5
    group_column: str | None = None
    holdout_fraction: float = 0.0

    def __post_init__(self) -> None:
        if self.n_splits < 2:
            raise ConfigError(f"folds.n_splits must be >= 2, found {self.n_splits}")
        if not 0.0 <= self.holdout_fraction < 0.5:
            raise ConfigError(f"folds.holdout_fraction must be in [0, 0.5), found {self.holdout_fraction}")


@dataclass(frozen=True)
class CellTableConfig:
    """The ``cell_table:`` section: how ``compare`` reads the per-cell feature table.

    The table is read only when something needs cells (``labels.level: cell``, a classical
    model with ``granularity: cell``), or, for the report's example cells, only the columns
    those show.

    Attributes
    ----------
    cells_per_image : int or None
        Keep at most this many cells per image, chosen by a hash of (image, object) seeded
        with the run's ``seed`` (``features.tables.sample_cells``), so the whole table is never
        in memory. ``None`` (the default) reads every cell. A cap changes the training rows of
        cell models, so it is part of the key of their finished units and exports; with
        ``labels.level: cell`` the gate (and its Otsu threshold) sees the kept cells only.
        Deep cell models cut their own crops and keep their own ``cells_per_image`` param.
    """

    cells_per_image: int | None = None

    def __post_init__(self) -> None:
        n = self.cells_per_image
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise ConfigError(f"cell_table.cells_per_image must be a whole number >= 1, or null to "
                              f"read every cell; found {n!r}")


@dataclass(frozen=True)
class CompareConfig:
    """Everything a comparison run needs (see ``configs/*.yaml``)."""

    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    features: dict[str, Any] = field(default_factory=lambda: {"preset": "standard"})
    models: tuple[ModelSpec, ...] = DEFAULT_MODELS
    folds: FoldsConfig = field(default_factory=FoldsConfig)
    top_k: int = 3
    seed: int = 0
    output: str = "results/demo"
    jobs: int = 1
    feature_importance: str = "gain"
    report: bool = True
    export_models: tuple[str, ...] = ()
    #: Networks whose fold-wise fine-tuned penultimate layer embeds each fold's test images,
    #: written as ``{output}/embeddings/finetuned-<label>/`` tables (``comparison.runner``).
    embed_models: tuple[str, ...] = ()
    labels: LabelsConfig = field(default_factory=LabelsConfig)
    cell_table: CellTableConfig = field(default_factory=CellTableConfig)

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
        if self.labels.level == "cell":
            wrong = [m.label for m in self.models if m.granularity != "cell"]
            if wrong:
                raise ConfigError(f"labels.level: cell classifies cells; models {wrong} need "
                                  f"granularity: cell")
            if self.dataset.unlabelled == "raise":
                # the cells carry the labels: an image without one is still a source of cells
                log.info("labels.level: cell -- images need no label of their own; unlabelled "
                         "images are kept (dataset.unlabelled: keep)")
                object.__setattr__(self, "dataset", replace(self.dataset, unlabelled="keep"))
        if self.cell_table.cells_per_image is not None and self.labels.source == "annotations":
            raise ConfigError("cell_table.cells_per_image samples cells before they are labelled, so with "
                              "labels.source: annotations it would drop annotated cells; leave it unset "
                              "(annotations label few cells)")
        unknown = [x for x in self.export_models if x not in labels]
        if unknown:
            raise ConfigError(f"export_models: {unknown} name no configured model; valid labels "
                              f"are {labels}")
        deep = [m.label for m in self.models if _is_deep(m)]
        not_deep = [x for x in self.embed_models if x not in deep]
        if not_deep:
            raise ConfigError(f"embed_models: {not_deep} name no deep model of this run; the fine-tuned "
                              f"network of each fold embeds its test images, so only networks can be "
                              f"listed (deep labels: {deep})")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str | Path | None = None) -> "CompareConfig":
        """Build and validate from a plain mapping (as loaded from YAML)."""
        if not isinstance(data, Mapping):
            raise ConfigError(f"{source or 'config'}: expected a mapping, found {type(data).__name__}")
        data = dict(data)
        if "dataset" in data:
            data["dataset"] = DatasetConfig.from_dict(data["dataset"], source=source)
        if "features" in data:
            data["features"] = dict(_check_features(data["features"], source))
        if "models" in data:
            if not isinstance(data["models"], (list, tuple)):
                raise ConfigError(f"models: expected a list, found {type(data['models']).__name__}")
            data["models"] = tuple(ModelSpec.from_dict(m, f"models[{i}]", source=source)
                                   for i, m in enumerate(data["models"]))
        if "output" in data:
            data["output"] = str(data["output"])
        if "labels" in data:
            data["labels"] = LabelsConfig.from_dict(data["labels"], source=source)
        if "cell_table" in data:
            data["cell_table"] = build(CellTableConfig, data["cell_table"], where="cell_table",
                                       source=source)
        if "export_models" in data:
            data["export_models"] = name_tuple(data["export_models"], "export_models") or ()
        if "embed_models" in data:
            data["embed_models"] = name_tuple(data["embed_models"], "embed_models") or ()
        return build(cls, data, source=source)

    def feature_config(self) -> Any:
        """The run's ``features.FeatureConfig``: ``features:``, with ``dataset.channels`` as its
        channels unless ``features.channels`` names them.

        The one place a compare configuration becomes feature settings: the extraction, the
        crops' segmentation and exported models all use it.
        """
        from cellcompare.features import FeatureConfig

        params = dict(self.features)
        if self.dataset.channels is not None:
            params.setdefault("channels", list(self.dataset.channels))
        return FeatureConfig.from_dict(params)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict (YAML-serialisable) form; tuples become lists."""
        return to_plain(self)

    def replace(self, **changes: Any) -> "CompareConfig":
        """A copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)


def _is_deep(spec: ModelSpec) -> bool:
    from cellcompare.comparison.adapters import model_kind

    return model_kind(spec.name) == "deep"


def check_models(models: Sequence[ModelSpec]) -> None:
    """Check every model's params as ``models[i].params`` (``comparison.adapters.check_params``).

    A configuration file's models are checked when it is read (:meth:`ModelSpec.from_dict`,
    naming the file); :func:`comparison.run` checks again, before any work, so that models
    built in code are checked too and weights are looked up on the machine that runs.
    """
    from cellcompare.comparison.adapters import check_params

    for i, spec in enumerate(models):
        check_params(spec.name, spec.granularity, spec.params, where=f"models[{i}].params")
        spec.check_representation(f"models[{i}]")


def with_weights(config: CompareConfig, path: str | Path) -> CompareConfig:
    """``config`` with every ResNet18 that asks for ImageNet weights (``weights: imagenet`` or
    ``auto``, the default) reading them from the file ``path`` instead (``compare --weights``).

    The file is torchvision's ``resnet18-<sha256 prefix>.pth``; its content is checked against
    the prefix before any work. Models with ``weights: none`` or their own file keep them.

    Raises
    ------
    ConfigError
        No model of ``config`` asks for ImageNet weights, so the file would not be used.

    Examples
    --------
    >>> from cellcompare.comparison.config import CompareConfig, ModelSpec, with_weights
    >>> config = CompareConfig(models=(ModelSpec("resnet18", "r"), ModelSpec("svm", "svm")))
    >>> with_weights(config, "/w/resnet18-f37072fd.pth").models[0].params
    {'weights': '/w/resnet18-f37072fd.pth'}
    """
    def asks_imagenet(spec: ModelSpec) -> bool:
        return (str(spec.params.get("arch", spec.name)) == "resnet18"
                and str(spec.params.get("weights", "auto")) in ("imagenet", "auto"))

    if not any(asks_imagenet(m) for m in config.models):
        raise ConfigError(f"--weights {path}: no model asks for ImageNet weights (resnet18 with "
                          f"weights: imagenet or auto), so the file would not be used")
    models = tuple(dataclasses.replace(m, params={**m.params, "weights": str(path)})
                   if asks_imagenet(m) else m for m in config.models)
    return config.replace(models=models)


def _check_features(value: Any, source: str | Path | None) -> Mapping[str, Any]:
    """Validate the ``features:`` mapping against ``features.FeatureConfig`` (kept as a mapping)."""
    from cellcompare.features import FeatureConfig

    if not isinstance(value, Mapping):
        raise ConfigError(f"features: expected a mapping, found {type(value).__name__}")
    FeatureConfig.from_dict(dict(value), source=source, where="features")
    return value


def load_config(path: str | Path, **overrides: Any) -> CompareConfig:
    """Load a comparison configuration from YAML.

    Parameters
    ----------
    path : str or Path
        YAML file with the keys of :class:`CompareConfig` (``dataset``, ``features``, ``models``,
        ``folds``, ``top_k``, ``seed``, ``output``...); ``configs/demo.yaml`` is the demo.
        Missing keys take the dataclass defaults.
    **overrides
        Top-level keys replacing the file's (e.g. ``output=``); ``None`` values are ignored.

    Returns
    -------
    CompareConfig

    Raises
    ------
    ConfigError
        Naming the file and the key that is unknown or invalid (``UnknownKeyError`` for keys).
    """
    data = read_yaml(path)
    data.update({k: v for k, v in overrides.items() if v is not None})
    return CompareConfig.from_dict(data, source=path)
