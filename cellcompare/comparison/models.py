"""Model adapters: every model answers ``fit(train: FoldData)`` / ``predict_proba(test: FoldData)``.

Probabilities always come back in the run's GLOBAL class order (``FoldData.classes``), with a
zero column for a class the model never saw in training.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from cellcompare.classical.inputs import feature_rows
from cellcompare.classical.models import MODEL_NAMES as CLASSICAL_NAMES
from cellcompare.deep.config import ARCHS as DEEP_NAMES
from cellcompare.deep.inputs import SampleImages
from cellcompare.proba import align_columns

__all__ = ["FoldData", "ModelAdapter", "ClassicalModel", "DeepModel", "ModelInputError",
           "register_model", "unregister_model", "registered_names", "model_kind", "build_adapter"]

log = logging.getLogger(__name__)
#: Cell id column of a ``level: cell`` run's cell table (``labels.cell_id``).
CELL_COLUMN = "Metadata_cell_id"


class ModelInputError(ValueError):
    """A fold lacks what a model needs (feature rows, a dataset for images)."""


@dataclass(frozen=True)
class FoldData:
    """One side (train or test) of a fold.

    Attributes
    ----------
    sample_ids, y, groups : np.ndarray
        Aligned, one entry per image.
    dataset : object or None
        The opened ``datasets`` dataset (``.get(sample_id).float_image``), for image models.
    image_table : pd.DataFrame or None
        Per-image feature rows of these images (``Metadata_sample_id`` column), any order.
    cell_table : pd.DataFrame or None
        Per-cell feature rows of these images.
    classes : tuple of str
        Global class order of the run.
    level : {"image", "cell"}
        ``cell``: ``sample_ids`` are cell ids (``labels.cell_id``) with per-cell labels ``y``.
    """

    sample_ids: np.ndarray
    y: np.ndarray
    groups: np.ndarray
    dataset: Any = None
    image_table: pd.DataFrame | None = None
    cell_table: pd.DataFrame | None = None
    classes: tuple[str, ...] = ()
    level: str = "image"

    def __len__(self) -> int:
        return len(self.sample_ids)


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

    def feature_importance(self, test: FoldData, permutation: bool = True) -> pd.DataFrame | None:
        """``feature, family, gain, permutation`` rows, or None for models without features."""
        return None


class ClassicalModel(ModelAdapter):
    """``classical.make_classifier`` on the per-image (or per-cell) feature table."""

    kind = "classical"

    def rows(self, data: FoldData) -> pd.DataFrame:
        """The model's input for ``data``: its images' feature rows (``classical.inputs``)."""
        table = data.cell_table if self.granularity == "cell" else data.image_table
        if table is None:
            raise ModelInputError(f"{self.name}: the fold has no {self.granularity} feature table")
        if data.level == "cell":
            wanted = set(map(str, data.sample_ids))
            return table[table[CELL_COLUMN].astype(str).isin(wanted)].reset_index(drop=True)
        return feature_rows(table, data.sample_ids)

    def _key(self, data: FoldData) -> str:
        return CELL_COLUMN if data.level == "cell" else "Metadata_sample_id"

    def fit(self, train: FoldData) -> "ClassicalModel":
        """Fit on the feature rows of the training images (cells carry their image's label)."""
        from cellcompare.classical import make_classifier

        table = self.rows(train)
        label_of = dict(zip(map(str, train.sample_ids), map(str, train.y)))
        y = table[self._key(train)].astype(str).map(label_of).to_numpy()
        missing = len(set(label_of) - set(table[self._key(train)].astype(str)))
        if missing:
            log.warning("%s: %d training images have no feature rows (failed extraction) and are "
                        "left out of training", self.name, missing)
        params = dict(self.params)
        params.setdefault("random_state", self.seed)
        self.estimator_ = make_classifier(self.name, granularity=self.granularity, **params)
        self.estimator_.fit(table, y)
        self.prior_ = _prior(np.asarray(train.y, dtype=str), train.classes)
        return self

    def predict_proba(self, test: FoldData) -> np.ndarray:
        """Probabilities per test image; images without feature rows get the training prior."""
        table = self.rows(test)
        if test.level == "cell":
            ids, proba = table[CELL_COLUMN].astype(str).to_numpy(), self.estimator_.predict_proba(table)
        elif self.granularity == "cell":
            ids, proba = self.estimator_.predict_image_proba(table)
        else:
            ids, proba = table["Metadata_sample_id"].astype(str).to_numpy(), self.estimator_.predict_proba(table)
        proba = align_columns(np.asarray(proba), self.estimator_.classes_, test.classes)
        rows = pd.DataFrame(proba, index=pd.Index(map(str, ids)))
        rows = rows[~rows.index.duplicated()]
        return self._rows_or_prior(rows, test.sample_ids, "images have no feature rows")

    def chosen_params(self) -> dict:
        return _jsonable(getattr(self.estimator_, "best_params_", {}) or {})

    def feature_importance(self, test: FoldData, permutation: bool = True) -> pd.DataFrame | None:
        """``classical.feature_importance`` on the test rows (image granularity only).

        ``permutation=False`` skips the permutation part: gain only, ``permutation`` is NaN (the
        permutation loop scores the whole pipeline once per feature per repeat, minutes for
        thousands of features).
        """
        from cellcompare.classical import feature_importance

        if self.granularity != "image":
            return None
        table = self.rows(test)
        label_of = dict(zip(map(str, test.sample_ids), map(str, test.y)))
        y = table["Metadata_sample_id"].astype(str).map(label_of).to_numpy()
        seen = np.isin(y, self.estimator_.classes_)
        return feature_importance(self.estimator_, table[seen].reset_index(drop=True), y[seen],
                                  n_repeats=3, random_state=self.seed, permutation=permutation)


class DeepModel(ModelAdapter):
    """``deep.DeepClassifier`` on whole images or on single-cell crops.

    ``granularity: image`` reads ``deep.inputs.sample_input`` of each image; ``granularity: cell``
    reads the crops of a ``deep.crop_cache.CropCache`` (``crops``, set by ``RunContext.adapter``), one
    per nucleus; each crop carries its image's label and an image's probabilities are the mean of
    its cells' (the classical cell granularity's rule). ``weights: auto`` means ImageNet when the
    file is cached, else random initialisation.
    """

    kind = "deep"
    #: ``deep.crop_cache.CropCache`` of the run (cell granularity only).
    crops: Any = None

    def _config(self):
        from cellcompare.deep import DeepConfig, imagenet_weights_path

        params = {k: v for k, v in self.params.items() if k != "channels"}
        params.setdefault("arch", self.name)
        params.setdefault("seed", self.seed)
        weights = str(params.get("weights", "auto"))
        if weights == "auto":
            cached = imagenet_weights_path().is_file() and params["arch"] == "resnet18"
            params["weights"] = "imagenet" if cached else "none"
            if not cached:
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

    def images(self, data: FoldData) -> SampleImages:
        """The model's input for ``data``: ``deep.inputs.sample_input`` of each image, lazily."""
        if data.dataset is None:
            raise ModelInputError(f"{self.name}: the fold has no dataset to read images from")
        return SampleImages(data.dataset, data.sample_ids, channels=self.channel_index)

    def cell_inputs(self, data: FoldData, normalize: str):
        """The crops of ``data``'s images and the image id of each crop.

        ``normalize`` (``DeepConfig.normalize``) scales each crop's channels by the mean of its
        plate's crops (``group``: ``data.groups``) or of its image's crops (``image``), computed on
        this side of the fold only.
        """
        from cellcompare.deep.crops import CellCrops, group_scales

        if self.crops is None:
            raise ModelInputError(f"{self.name}: granularity 'cell' needs the run's crop cache "
                                  f"(RunContext.adapter sets it); none was given")
        cells = self.crops.cells
        images = cells["Metadata_sample_id"].astype(str).to_numpy()
        if data.level == "cell":  # sample ids are cell ids: one crop each
            from cellcompare.comparison.labels import cell_id

            ids = cell_id(images, cells["Metadata_ObjectNumber"])
            position = pd.Series(np.arange(len(ids)), index=ids)
            wanted = pd.Index(map(str, data.sample_ids))
            rows = position.reindex(wanted[wanted.isin(position.index)]).to_numpy(dtype=np.int64)
            sids = ids.astype(str)[rows]
        else:
            rows = self.crops.rows(data.sample_ids)
            sids = images[rows]
        scale = None
        if normalize != "none":
            group_of = dict(zip(map(str, data.sample_ids), map(str, data.groups)))
            keys = images[rows] if normalize == "image" else np.array([group_of[s] for s in sids])
            scale = group_scales(self.crops.crops, rows, keys)
        return CellCrops(self.crops.crops, rows, scale), sids

    def fit(self, train: FoldData) -> "DeepModel":
        """Train on the training images (or their cells' crops), read lazily."""
        from cellcompare.deep import DeepClassifier

        config = self._config()
        self.classifier_ = DeepClassifier(config)
        self.prior_ = _prior(np.asarray(train.y, dtype=str), train.classes)
        if self.granularity == "cell":
            images, sids = self.cell_inputs(train, config.normalize)
            label_of = dict(zip(map(str, train.sample_ids), map(str, train.y)))
            keep = _per_image(sids, config.cells_per_image, config.seed)
            images = images.subset(keep)
            y = np.array([label_of[s] for s in sids[keep]], dtype=str)
            log.info("%s: training on %d cell crops", self.name, len(y))
        else:
            images, y = self.images(train), np.asarray(train.y, dtype=str)
        self.classifier_.fit(images, y)
        self.weights = _jsonable(dict(getattr(self.classifier_, "weights_info_", {}) or {}))
        return self

    def predict_proba(self, test: FoldData) -> np.ndarray:
        """Probabilities per test image in the global class order (cells: mean over its crops)."""
        if self.granularity != "cell":
            proba = self.classifier_.predict_proba(self.images(test))
            return align_columns(np.asarray(proba), self.classifier_.classes_, test.classes)
        images, sids = self.cell_inputs(test, self.classifier_.config.normalize)
        proba = align_columns(np.asarray(self.classifier_.predict_proba(images)),
                              self.classifier_.classes_, test.classes)
        self.cell_proba_ = (sids, images.rows, proba)
        means = pd.DataFrame(proba, index=pd.Index(sids)).groupby(level=0).mean()
        missing = "cells have no crop" if test.level == "cell" else "images have no segmented cells"
        return self._rows_or_prior(means, test.sample_ids, missing)

    def chosen_params(self) -> dict:
        return _jsonable(getattr(self.classifier_, "best_params_", {}) or {})


def _per_image(sids: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    """Positions keeping at most ``limit`` crops per image, drawn once with ``seed`` (sorted)."""
    positions = np.arange(len(sids))
    if limit is None:
        return positions
    rng = np.random.default_rng(seed)
    keep = []
    for sid in np.unique(sids):
        mine = positions[sids == sid]
        keep.append(mine if len(mine) <= limit else rng.choice(mine, limit, replace=False))
    return np.sort(np.concatenate(keep)) if keep else positions[:0]


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


def model_kind(name: str) -> str:
    """``"classical"`` (needs feature tables) or ``"deep"`` (reads images) for a registered name."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown model name {name!r}; valid names are {registered_names()}")
    return str(getattr(_REGISTRY[name], "kind", "classical"))


def build_adapter(name: str, *, granularity: str = "image", params: dict | None = None,
                  seed: int = 0) -> ModelAdapter:
    """Instantiate the adapter registered under ``name``."""
    if name not in _REGISTRY:
        raise ValueError(f"unknown model name {name!r}; valid names are {registered_names()}")
    return _REGISTRY[name](name, granularity=granularity, params=params, seed=seed)
