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

__all__ = ["FoldData", "ModelAdapter", "ClassicalModel", "DeepModel", "ModelInputError",
           "register_model", "registered_names", "model_kind", "build_adapter", "align_proba"]

log = logging.getLogger(__name__)


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
    """

    sample_ids: np.ndarray
    y: np.ndarray
    groups: np.ndarray
    dataset: Any = None
    image_table: pd.DataFrame | None = None
    cell_table: pd.DataFrame | None = None
    classes: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.sample_ids)


def align_proba(proba: np.ndarray, model_classes: Sequence, classes: Sequence[str]) -> np.ndarray:
    """Reorder ``(n, len(model_classes))`` columns into ``classes`` order (absent classes -> 0)."""
    out = np.zeros((proba.shape[0], len(classes)), dtype=float)
    where = {str(c): j for j, c in enumerate(classes)}
    for j, c in enumerate(model_classes):
        if str(c) not in where:
            raise ModelInputError(f"model class {c!r} is not one of the run's classes {list(classes)}")
        out[:, where[str(c)]] = proba[:, j]
    return out


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

    def feature_importance(self, test: FoldData, permutation: bool = True) -> pd.DataFrame | None:
        """``feature, family, gain, permutation`` rows, or None for models without features."""
        return None


class ClassicalModel(ModelAdapter):
    """``classical.make_classifier`` on the per-image (or per-cell) feature table."""

    kind = "classical"

    def _table(self, data: FoldData) -> pd.DataFrame:
        table = data.cell_table if self.granularity == "cell" else data.image_table
        if table is None:
            raise ModelInputError(f"{self.name}: the fold has no {self.granularity} feature table")
        wanted = set(map(str, data.sample_ids))
        return table[table["Metadata_sample_id"].astype(str).isin(wanted)]

    def fit(self, train: FoldData) -> "ClassicalModel":
        """Fit on the feature rows of the training images (cells carry their image's label)."""
        from classical import make_classifier

        table = self._table(train)
        label_of = dict(zip(map(str, train.sample_ids), map(str, train.y)))
        y = table["Metadata_sample_id"].astype(str).map(label_of).to_numpy()
        missing = len(set(label_of) - set(table["Metadata_sample_id"].astype(str)))
        if missing:
            log.warning("%s: %d training images have no feature rows (failed extraction) and are "
                        "left out of training", self.name, missing)
        params = dict(self.params)
        params.setdefault("random_state", self.seed)
        self.estimator_ = make_classifier(self.name, granularity=self.granularity, **params)
        self.estimator_.fit(table.reset_index(drop=True), y)
        self.prior_ = _prior(np.asarray(train.y, dtype=str), train.classes)
        return self

    def predict_proba(self, test: FoldData) -> np.ndarray:
        """Probabilities per test image; images without feature rows get the training prior."""
        table = self._table(test).reset_index(drop=True)
        if self.granularity == "cell":
            ids, proba = self.estimator_.predict_image_proba(table)
        else:
            ids, proba = table["Metadata_sample_id"].astype(str).to_numpy(), self.estimator_.predict_proba(table)
        proba = align_proba(np.asarray(proba), self.estimator_.classes_, test.classes)
        rows = pd.DataFrame(proba, index=pd.Index(map(str, ids)))
        rows = rows[~rows.index.duplicated()]
        out = rows.reindex([str(s) for s in test.sample_ids])
        absent = out.isna().any(axis=1).to_numpy()
        if absent.any():
            msg = (f"{self.name}: {int(absent.sum())} test images have no feature rows; they get the "
                   f"training class prior")
            log.warning(msg)
            self.notes.append(msg)
            out.loc[absent] = np.tile(self.prior_, (int(absent.sum()), 1))
        return out.to_numpy(dtype=float)

    def chosen_params(self) -> dict:
        return _jsonable(getattr(self.estimator_, "best_params_", {}) or {})

    def feature_importance(self, test: FoldData, permutation: bool = True) -> pd.DataFrame | None:
        """``classical.feature_importance`` on the test rows (image granularity only).

        ``permutation=False`` skips the permutation part: gain only, ``permutation`` is NaN (the
        permutation loop scores the whole pipeline once per feature per repeat, minutes for
        thousands of features).
        """
        from classical import feature_importance

        if self.granularity != "image":
            return None
        table = self._table(test).reset_index(drop=True)
        label_of = dict(zip(map(str, test.sample_ids), map(str, test.y)))
        y = table["Metadata_sample_id"].astype(str).map(label_of).to_numpy()
        seen = np.isin(y, self.estimator_.classes_)
        return feature_importance(self.estimator_, table[seen].reset_index(drop=True), y[seen],
                                  n_repeats=3, random_state=self.seed, permutation=permutation)


class LazyImages:
    """Sequence of float32 ``(C, H, W)`` images read from the dataset by sample id on access."""

    def __init__(self, dataset: Any, sample_ids: Sequence[str], channels: Sequence[int] | None = None):
        self.dataset = dataset
        self.sample_ids = [str(s) for s in sample_ids]
        self.channels = None if channels is None else list(channels)

    def __len__(self) -> int:
        return len(self.sample_ids)

    def __getitem__(self, i: int) -> np.ndarray:
        image = self.dataset.get(self.sample_ids[i]).float_image
        return image if self.channels is None else image[self.channels]


class DeepModel(ModelAdapter):
    """``deep.DeepClassifier`` on the raw images (``weights: auto`` = ImageNet when cached)."""

    kind = "deep"

    def _config(self):
        from deep import DeepConfig, imagenet_weights_path

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
        return DeepConfig.from_dict(params)

    def _images(self, data: FoldData) -> LazyImages:
        if data.dataset is None:
            raise ModelInputError(f"{self.name}: the fold has no dataset to read images from")
        return LazyImages(data.dataset, data.sample_ids, self.params.get("channels"))

    def fit(self, train: FoldData) -> "DeepModel":
        """Train on the training images (read lazily, one per access)."""
        from deep import DeepClassifier

        self.classifier_ = DeepClassifier(self._config())
        self.classifier_.fit(self._images(train), np.asarray(train.y, dtype=str))
        self.weights = _jsonable(dict(getattr(self.classifier_, "weights_info_", {}) or {}))
        return self

    def predict_proba(self, test: FoldData) -> np.ndarray:
        """Probabilities per test image in the global class order."""
        proba = self.classifier_.predict_proba(self._images(test))
        return align_proba(np.asarray(proba), self.classifier_.classes_, test.classes)

    def chosen_params(self) -> dict:
        return _jsonable(getattr(self.classifier_, "best_params_", {}) or {})


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
_REGISTRY: dict[str, Factory] = {"svm": ClassicalModel, "linear_svm": ClassicalModel,
                                 "xgboost": ClassicalModel, "resnet18": DeepModel,
                                 "smallcnn": DeepModel}


def register_model(name: str, factory: Factory) -> None:
    """Add (or replace) a model: ``factory(name, granularity=, params=, seed=) -> ModelAdapter``."""
    _REGISTRY[name] = factory


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
