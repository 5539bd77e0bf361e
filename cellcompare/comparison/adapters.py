"""Model adapters: every model answers ``fit(train: FoldData)`` / ``predict_proba(test: FoldData)``.

Probabilities always come back in the run's GLOBAL class order (``FoldData.classes``), with a
zero column for a class the model never saw in training.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from cellcompare.classical.models import MODEL_NAMES as CLASSICAL_NAMES
from cellcompare.comparison.representation import CellProfiler
from cellcompare.deep.cells import CellInputs
from cellcompare.deep.config import ARCHS as DEEP_NAMES
from cellcompare.deep.inputs import SampleImages
from cellcompare.proba import align_columns, mean_by

__all__ = ["FoldData", "ModelAdapter", "ClassicalModel", "DeepModel", "ModelInputError", "SSLInputs",
           "check_params", "input_settings", "register_model", "unregister_model", "registered_names", "model_kind",
           "build_adapter"]

log = logging.getLogger(__name__)


class ModelInputError(ValueError):
    """A fold lacks what a model needs (feature rows, a dataset for images, crops)."""


@dataclass(frozen=True)
class FoldData:
    """One side (train or test) of a fold.

    Attributes
    ----------
    sample_ids, y, groups : np.ndarray
        Aligned, one entry per unit of ``task`` (an image, or a cell id of a cell task).
    task : comparison.task.ImageTask or CellTask
        What a unit is, the feature tables and the global class order of the run.
    dataset : object or None
        The opened ``datasets`` dataset (``.get(sample_id).float_image``), for image models.
    """

    sample_ids: np.ndarray
    y: np.ndarray
    groups: np.ndarray
    task: Any
    dataset: Any = None

    def __len__(self) -> int:
        return len(self.sample_ids)

    @property
    def classes(self) -> tuple[str, ...]:
        """Global class order of the run."""
        return self.task.classes

    def labels_of(self, units: Sequence[str]) -> np.ndarray:
        """The label of each of ``units`` (ids of this side)."""
        label_of = dict(zip(map(str, self.sample_ids), map(str, self.y)))
        return np.array([label_of[str(u)] for u in units], dtype=str)


def _prior(train_y: np.ndarray, classes: Sequence[str]) -> np.ndarray:
    counts = np.array([(train_y == c).sum() for c in classes], dtype=float)
    return counts / counts.sum()


class ModelAdapter:
    """Base adapter. Subclasses set ``kind`` and implement ``fit`` / ``predict_proba``."""

    kind = "abstract"

    def __init__(self, name: str, granularity: str = "image", params: dict | None = None,
                 seed: int = 0) -> None:
        self.name = name
        self.granularity = granularity
        self.params = dict(params or {})
        self.seed = seed
        self.weights: dict | None = None
        self.notes: list[str] = []

    def fit(self, train: FoldData) -> "ModelAdapter":  # pragma: no cover - interface
        raise NotImplementedError

    def predict_proba(self, test: FoldData) -> np.ndarray:  # pragma: no cover - interface
        raise NotImplementedError

    def chosen_params(self) -> dict:
        """Hyper-parameters the fitted model ended up with (tuned or fixed)."""
        return {}

    def _rows_or_prior(self, rows: pd.DataFrame, sample_ids: Sequence[str], missing: str) -> np.ndarray:
        """``rows`` (indexed by id) in ``sample_ids`` order; ids without a row get ``prior_``.

        The fill is logged and kept in :attr:`notes`: "{n} test {missing}; they get the
        training class prior".
        """
        out = rows.reindex([str(s) for s in sample_ids])
        absent = out.isna().any(axis=1).to_numpy()
        if absent.any():
            msg = f"{self.name}: {int(absent.sum())} test {missing}; they get the training class prior"
            log.warning(msg)
            self.notes.append(msg)
            out.loc[absent] = np.tile(self.prior_, (int(absent.sum()), 1))
        return out.to_numpy(dtype=float)

    def _unit_proba(self, ids: np.ndarray, proba: np.ndarray, model_classes: Sequence,
                    test: FoldData, missing: str) -> np.ndarray:
        """Rows of ``proba`` averaged per unit id (``proba.mean_by``), in the run's class order
        and ``test``'s unit order; units without a row get the training prior."""
        units, means = mean_by(ids, proba)
        means = align_columns(means, model_classes, test.classes)
        return self._rows_or_prior(pd.DataFrame(means, index=pd.Index(units)), test.sample_ids, missing)

    def feature_importance(self, test: FoldData, permutation: bool = True) -> pd.DataFrame | None:
        """``feature, family, gain, permutation`` rows, or None for models without features."""
        return None


class ClassicalModel(ModelAdapter):
    """``classical.make_classifier`` on the per-image (or per-cell) feature table.

    Each row carries the unit it belongs to in the task's key column (its image, or its own
    cell id in a cell task): training rows take their unit's label, and a unit's probabilities
    are the mean of its rows' (one row: itself; an image's cells: their mean, as
    ``TableClassifier.predict_image_proba``).

    Parameters
    ----------
    representation : comparison.representation.CellProfiler or Embeddings, optional
        The table the model reads (default: the extracted CellProfiler features);
        ``RunContext.adapter`` passes a model's ``representation``.
    """

    kind = "classical"

    def __init__(self, name: str, granularity: str = "image", params: dict | None = None,
                 seed: int = 0, *, representation: Any = None) -> None:
        super().__init__(name, granularity, params, seed)
        self.representation = representation if representation is not None else CellProfiler()

    @classmethod
    def check_params(cls, name: str, granularity: str, params: dict, *, where: str = "params",
                     source: str | Path | None = None) -> None:
        """``classical.estimator.check_params``: every key names a parameter of the table
        classifier or of its final estimator."""
        from cellcompare.classical.estimator import check_params

        check_params(name, params, where=where, source=source)

    def rows(self, data: FoldData) -> pd.DataFrame:
        """The model's input for ``data``: its units' feature rows (``classical.inputs``) of
        its representation's table."""
        table = self.representation.table(data, self.granularity)
        if table is None:
            raise ModelInputError(f"{self.name}: the fold has no {self.granularity} feature table")
        return data.task.rows(table, data.sample_ids)

    def fit(self, train: FoldData) -> "ClassicalModel":
        """Fit on the feature rows of the training units (cells carry their image's label).

        The inner folds (tuning) follow the outer grouping: the task gives each row's group
        (``Task.inner_groups``).
        """
        from cellcompare.classical import make_classifier

        self.representation.fit(train)
        table = self.rows(train)
        units = table[train.task.key].astype(str)
        y = train.labels_of(units)
        missing = len(set(map(str, train.sample_ids)) - set(units))
        if missing:
            log.warning("%s: %d training %s have no feature rows (failed extraction) and are "
                        "left out of training", self.name, missing, train.task.unit_name)
        params = dict(self.params)
        params.setdefault("random_state", self.seed)
        self.estimator_ = make_classifier(self.name, granularity=self.granularity, **params)
        self.estimator_.fit(table, y, groups=train.task.inner_groups(train, units))
        self.prior_ = _prior(np.asarray(train.y, dtype=str), train.classes)
        record = self.representation.record()
        if "embedding" in record:
            self.weights = _jsonable(record["embedding"].get("weights"))
        return self

    def predict_proba(self, test: FoldData) -> np.ndarray:
        """Probabilities per test unit; units without feature rows get the training prior."""
        table = self.rows(test)
        ids = table[test.task.key].astype(str).to_numpy()
        return self._unit_proba(ids, self.estimator_.predict_proba(table), self.estimator_.classes_,
                                test, f"{test.task.unit_name} have no feature rows")

    def chosen_params(self) -> dict:
        return _jsonable(getattr(self.estimator_, "best_params_", {}) or {})

    def feature_importance(self, test: FoldData, permutation: bool = True) -> pd.DataFrame | None:
        """``classical.feature_importance`` on the test rows (image granularity only).

        ``permutation=False`` skips the permutation part: gain only, ``permutation`` is NaN (the
        permutation loop scores the whole pipeline once per feature per repeat, minutes for
        thousands of features).
        """
        from cellcompare.classical import feature_importance

        if self.granularity != "image" or self.representation.name != "cellprofiler":
            return None  # embedding dimensions name no measurement
        table = self.rows(test)
        y = test.labels_of(table[test.task.key].astype(str))
        seen = np.isin(y, self.estimator_.classes_)
        return feature_importance(self.estimator_, table[seen].reset_index(drop=True), y[seen],
                                  n_repeats=3, random_state=self.seed, permutation=permutation)


class DeepModel(ModelAdapter):
    """``deep.DeepClassifier`` on whole images or on single-cell crops.

    ``granularity: image`` reads ``deep.inputs.sample_input`` of each image; ``granularity: cell``
    reads the crops of the run's ``deep.crop_cache.CropCache`` (``crops``), one per nucleus, as
    ``deep.cells.CellInputs``: the classifier normalises them (``DeepClassifier.fit_cells`` /
    ``predict_cell_proba``) and a unit's probabilities are the mean of its crops' (an image's
    cells; a cell task's cell: its own crop). ``weights: auto`` means ImageNet when the file is
    cached, else random initialisation.

    Parameters
    ----------
    crops : deep.crop_cache.CropCache, optional
        The run's crops (``granularity: cell``; ``RunContext.adapter`` passes them).
    input_cache : deep.input_cache.InputCache, optional
        The run's decoded, resized sites (``granularity: image``; ``RunContext.adapter`` passes
        it unless the params say ``input_cache: none``): read instead of the image files.
    ssl : SSLInputs, optional
        ``weights: ssl``: where the fold's backbone is cached and what else the run holds (for
        ``ssl: {use_test_images: true}``); ``RunContext.adapter`` passes it.
    """

    kind = "deep"

    def __init__(self, name: str, granularity: str = "image", params: dict | None = None,
                 seed: int = 0, *, crops: Any = None, input_cache: Any = None, ssl: Any = None) -> None:
        super().__init__(name, granularity, params, seed)
        self.crops = crops
        self.input_cache = input_cache
        self.ssl = ssl

    @staticmethod
    def input_settings(name: str, granularity: str, params: dict) -> Any:
        """The ``deep.input_cache.InputSettings`` this model reads its images with, or ``None``
        (cell crops, or ``input_cache: none``): ``image_size``, ``resize`` and ``input_cache``
        of its params with ``DeepConfig``'s defaults, and its ``channels``."""
        from cellcompare.deep import DeepConfig
        from cellcompare.deep.input_cache import InputSettings

        if granularity != "image":
            return None
        config = DeepConfig.from_dict({k: params[k] for k in ("image_size", "resize", "input_cache")
                                       if k in params})
        return None if config.input_cache == "none" else InputSettings.of(config, params.get("channels"))

    @staticmethod
    def config_params(name: str, params: dict) -> dict:
        """``deep.DeepConfig`` fields of a model's params: ``arch`` defaults to ``name``, the
        weights are resolved and checked on disk (``deep.models.weights_for``; ``auto`` when
        unset), ``channels`` (the adapter's own) left out."""
        from cellcompare.deep.models import weights_for

        out = {k: v for k, v in params.items() if k != "channels"}
        out.setdefault("arch", name)
        out["weights"] = weights_for(str(out.get("weights", "auto")), str(out["arch"]))
        return out

    @classmethod
    def check_params(cls, name: str, granularity: str, params: dict, *, where: str = "params",
                     source: str | Path | None = None) -> None:
        """Build the model's ``DeepConfig`` from ``params`` (unknown keys, bad values and
        missing weights raise, naming ``source`` and ``where``), as :meth:`fit` will."""
        from cellcompare.deep import DeepConfig, WeightsChecksumError, WeightsUnavailableError

        try:
            fields = cls.config_params(name, params)
        except (WeightsUnavailableError, WeightsChecksumError) as exc:
            prefix = f"{source}: " if source is not None else ""
            raise type(exc)(f"{prefix}{where}.weights: {exc}") from exc
        DeepConfig.from_dict(fields, where=where, source=source)

    def _config(self):
        from cellcompare.deep import DeepConfig, imagenet_weights_path

        params = self.config_params(self.name, self.params)
        params.setdefault("seed", self.seed)
        if str(self.params.get("weights", "auto")) == "auto" and params["weights"] == "none":
            msg = (f"{self.name}: ImageNet weights are not cached at {imagenet_weights_path()}; "
                   f"training from random initialisation (weights: none)")
            log.warning(msg)
            if msg not in self.notes:
                self.notes.append(msg)
        if self.granularity == "cell" and self.crops is not None:
            params["crop_size"] = int(self.crops.crop_size)  # the size actually cut (auto resolved)
        return DeepConfig.from_dict(params)

    @property
    def channel_index(self) -> list[int] | None:
        """Positions of the dataset channels the model uses (``None``: all)."""
        channels = self.params.get("channels")
        return None if channels is None else [int(c) for c in channels]

    def images(self, data: FoldData) -> Sequence:
        """The model's input for ``data``: ``deep.inputs.sample_input`` of each image, lazily
        (from the run's input cache when it was given one)."""
        if self.input_cache is not None:
            return self.input_cache.images(data.sample_ids)
        if data.dataset is None:
            raise ModelInputError(f"{self.name}: the fold has no dataset to read images from")
        return SampleImages(data.dataset, data.sample_ids, channels=self.channel_index)

    def cell_inputs(self, data: FoldData) -> tuple[CellInputs, np.ndarray]:
        """The crops of ``data``'s units (``task.crop_rows``) and the unit of each crop.

        Each crop carries its image and its unit's group (``data.groups``), so the classifier's
        ``normalize`` sees this side of the fold only.
        """
        if self.crops is None:
            raise ModelInputError(f"{self.name}: granularity 'cell' needs the run's crop cache "
                                  f"(RunContext.adapter passes it); none was given")
        rows, units = data.task.crop_rows(self.crops, data.sample_ids)
        images = self.crops.image_ids[rows]
        group_of = dict(zip(map(str, data.sample_ids), map(str, data.groups)))
        groups = np.array([group_of[u] for u in units], dtype=str)
        return CellInputs(self.crops.crops, rows, images, groups), units

    def fit(self, train: FoldData) -> "DeepModel":
        """Train on the training images (or their cells' crops), read lazily."""
        from cellcompare.deep import DeepClassifier

        config = self._config()
        self.classifier_ = DeepClassifier(config)
        self.prior_ = _prior(np.asarray(train.y, dtype=str), train.classes)
        pretraining: dict[str, Any] = {}
        if self.ssl is not None and config.weights == "ssl":
            pretraining = {"ssl_key": self.ssl.key(train.sample_ids), "ssl_folder": self.ssl.folder}
            if config.ssl.use_test_images:  # transductive: the run's other images, unlabeled
                pretraining["unlabeled"] = self._others(train)
        if self.granularity == "cell":
            cells, units = self.cell_inputs(train)
            self.classifier_.fit_cells(cells, train.labels_of(units), **pretraining)
        else:
            self.classifier_.fit(self.images(train), np.asarray(train.y, dtype=str), **pretraining)
        self.weights = _jsonable(dict(getattr(self.classifier_, "weights_info_", {}) or {}))
        return self

    def _others(self, train: FoldData) -> Any:
        """The run's images outside ``train`` (their crops, for a cell model), unlabeled."""
        seen = set(train.task.images_of(train.sample_ids))
        others = np.asarray([s for s in self.ssl.image_ids if s not in seen], dtype=str)
        if self.granularity != "cell":
            if self.input_cache is not None:
                return self.input_cache.images(others)
            return SampleImages(train.dataset, others, channels=self.channel_index)
        rows = self.crops.rows(others)
        images = self.crops.image_ids[rows]
        return CellInputs(self.crops.crops, rows, images, np.asarray([self.ssl.groups[i] for i in images]))

    def predict_proba(self, test: FoldData) -> np.ndarray:
        """Probabilities per test unit in the global class order (cells: mean over its crops).

        A cell model keeps ``cell_proba_``: ``(unit of each crop, the crops as the model read
        them, their probabilities)`` in the run's class order, for Grad-CAM examples.
        """
        clf = self.classifier_
        if self.granularity != "cell":
            return align_columns(np.asarray(clf.predict_proba(self.images(test))), clf.classes_, test.classes)
        cells, units = self.cell_inputs(test)
        proba = clf.predict_cell_proba(cells)
        self.cell_proba_ = (units, cells.scaled(clf.config.normalize),
                            align_columns(proba, clf.classes_, test.classes))
        return self._unit_proba(units, proba, clf.classes_, test, f"{test.task.unit_name} have no crop")

    def chosen_params(self) -> dict:
        return _jsonable(getattr(self.classifier_, "best_params_", {}) or {})


@dataclass(frozen=True)
class SSLInputs:
    """What a ``weights: ssl`` model needs from its run (``RunContext.ssl_inputs``).

    Attributes
    ----------
    folder : Path
        ``{output}/ssl``: the cached backbones (``deep.ssl.pretrain``).
    data : str
        The run's data digest; with a fold's training ids it names the fold's backbone.
    image_ids : tuple of str
        Every image of the run (the transductive ``use_test_images`` reads the others).
    groups : dict
        ``{image: group}`` (the plate a crop is normalised with).
    """

    folder: Path
    data: str
    image_ids: tuple
    groups: dict

    def key(self, train_ids: Sequence[str]) -> str:
        """The backbone key of a fold: this data and its sorted training units.

        Examples
        --------
        >>> inputs = SSLInputs(Path("ssl"), "d1", (), {})
        >>> inputs.key(["b", "a"]) == inputs.key(["a", "b"]) != SSLInputs(Path("ssl"), "d2", (), {}).key(["a"])
        True
        """
        text = json.dumps([self.data, sorted(map(str, train_ids))])
        return hashlib.sha256(text.encode()).hexdigest()[:20]


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


Factory = Callable[..., ModelAdapter]
#: The model registry: every name a configuration may use. The families own their names
#: (``classical.models.MODEL_NAMES``, ``deep.config.ARCHS``); this maps each to its adapter.
_REGISTRY: dict[str, Factory] = {**{name: ClassicalModel for name in CLASSICAL_NAMES},
                                 **{name: DeepModel for name in DEEP_NAMES}}


def register_model(name: str, factory: Factory) -> None:
    """Add a model: ``factory(name, granularity=, params=, seed=) -> ModelAdapter``.

    A factory of ``kind = "deep"`` used at ``granularity: cell`` is also given ``crops=`` (the
    run's ``deep.crop_cache.CropCache``), as :class:`DeepModel` is; one with an
    ``input_settings`` method (:meth:`DeepModel.input_settings`) is given ``input_cache=``.

    Raises
    ------
    ValueError
        ``name`` is already registered (call :func:`unregister_model` first to replace it).
    """
    if name in _REGISTRY:
        raise ValueError(f"model name {name!r} is already registered; unregister_model it first")
    _REGISTRY[name] = factory


def unregister_model(name: str) -> None:
    """Remove a model added with :func:`register_model` (the built-in names stay)."""
    if name in CLASSICAL_NAMES or name in DEEP_NAMES:
        raise ValueError(f"{name!r} is a built-in model and cannot be unregistered")
    _REGISTRY.pop(name, None)


def registered_names() -> list[str]:
    """Valid model names."""
    return sorted(_REGISTRY)


def check_params(name: str, granularity: str, params: dict, *, where: str = "params",
                 source: str | Path | None = None) -> None:
    """Check a model's params against its family's estimator or config class, before any work.

    The adapter registered under ``name`` checks them (``check_params`` classmethod of
    :class:`ClassicalModel` and :class:`DeepModel`: unknown keys, and for deep models values
    and weights on disk); a registered factory without one is said in the log.

    Raises
    ------
    cellcompare.config.UnknownKeyError
        A key the model cannot use, named as ``{where}.{key}`` with ``source`` in front.
    ValueError
        A value the model's configuration refuses (deep models), or missing weights.

    Examples
    --------
    >>> from cellcompare.comparison.adapters import check_params
    >>> check_params("smallcnn", "image", {"weights": "none", "epoch": 3}, where="models[1].params",
    ...              source="run.yaml")
    Traceback (most recent call last):
    ...
    cellcompare.config.UnknownKeyError: run.yaml: unknown key 'models[1].params.epoch'; ...
    """
    factory = _REGISTRY.get(name)
    if factory is None:
        raise ValueError(f"unknown model name {name!r}; valid names are {registered_names()}")
    checker = getattr(factory, "check_params", None)
    if checker is None:
        log.info("%s: its adapter has no check_params; %s are checked when it is fitted", name, where)
        return
    checker(name, granularity, params, where=where, source=source)


def input_settings(name: str, granularity: str, params: dict) -> Any:
    """The decoded-input settings (``deep.input_cache.InputSettings``) the adapter of ``name``
    reads its images with, or ``None``: it reads no input cache (``DeepModel.input_settings``)."""
    settings = getattr(_REGISTRY.get(name), "input_settings", None)
    return None if settings is None else settings(name, granularity, params)


def model_kind(name: str) -> str:
    """``"classical"`` (needs feature tables) or ``"deep"`` (reads images) for a registered name."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown model name {name!r}; valid names are {registered_names()}")
    return str(getattr(_REGISTRY[name], "kind", "classical"))


def build_adapter(name: str, *, granularity: str = "image", params: dict | None = None,
                  seed: int = 0, **inputs: Any) -> ModelAdapter:
    """Instantiate the adapter registered under ``name``.

    ``inputs`` are what the run prepared for it and only it takes (a deep cell model's
    ``crops``); they are passed on as keyword arguments.
    """
    if name not in _REGISTRY:
        raise ValueError(f"unknown model name {name!r}; valid names are {registered_names()}")
    return _REGISTRY[name](name, granularity=granularity, params=params, seed=seed, **inputs)
