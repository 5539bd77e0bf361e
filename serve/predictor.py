"""Predictors: load a MODEL_DIR once, predict class probabilities for in-memory Samples."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np
import pandas as pd

from serve.errors import InputSpecError
from serve.model_dir import MODEL_SUBDIR, InputSpec, read_spec

logger = logging.getLogger(__name__)


class Predictor(Protocol):
    """What serve/ needs from a loaded model."""

    classes: tuple[str, ...]
    input_spec: InputSpec
    meta: dict[str, Any]

    def predict_proba(self, samples: Sequence[Any]) -> tuple[tuple[str, ...], np.ndarray]:
        """Return ``(classes, proba)`` with ``proba`` of shape ``(n, n_classes)``."""


def check_image(image: np.ndarray, spec: InputSpec, source: str) -> None:
    """Raise :class:`InputSpecError` when ``image`` ``(C, H, W)`` does not fit ``spec``."""
    if image.ndim != 3:
        raise InputSpecError(f"{source}: image has shape {image.shape}; expected (C, H, W)")
    check_shape(tuple(image.shape), spec, source)


def check_shape(shape: tuple[int, ...], spec: InputSpec, source: str) -> None:
    """Raise :class:`InputSpecError` when a ``(C, H, W)`` shape does not fit ``spec``."""
    c, h, w = shape
    if c != len(spec.channels):
        raise InputSpecError(f"{source}: image has {c} channel(s); model expects "
                             f"{len(spec.channels)} ({', '.join(spec.channels)})")
    if min(h, w) < spec.min_size or max(h, w) > spec.max_size:
        raise InputSpecError(f"{source}: image is {h}x{w} px; model accepts sides "
                             f"{spec.min_size}..{spec.max_size}")


class _Base:
    def __init__(self, meta: dict[str, Any]) -> None:
        self.meta = meta
        self.classes = tuple(str(c) for c in meta["classes"])
        self.input_spec = InputSpec.from_dict(meta["input"])

    def _check(self, samples: Sequence[Any]) -> None:
        for s in samples:
            check_image(np.asarray(s.image), self.input_spec, str(getattr(s, "id", "image")))


class ClassicalPredictor(_Base):
    """Feature extraction (``features.extract_sample``) + a classical estimator."""

    def __init__(self, model_dir: Path, meta: dict[str, Any]) -> None:
        super().__init__(meta)
        import classical
        from features import FeatureConfig
        self.estimator = classical.load_model(model_dir / MODEL_SUBDIR)
        self.feature_config = FeatureConfig.from_dict(meta["feature_config"])
        self.granularity = meta.get("granularity", "image")

    def _with_names(self, sample: Any) -> Any:
        from dataclasses import replace
        md = dict(sample.metadata)
        md["channel_names"] = list(self.input_spec.channels)
        return replace(sample, metadata=md)

    def predict_proba(self, samples: Sequence[Any]) -> tuple[tuple[str, ...], np.ndarray]:
        """Extract features per sample and return ``(classes, proba)``."""
        self._check(samples)
        tables = [self._extract(self._with_names(s), i + 1) for i, s in enumerate(samples)]
        if self.granularity == "cell":
            cells = pd.concat(tables, ignore_index=True)
            ids, proba = self.estimator.predict_image_proba(cells)
            order = {str(k): i for i, k in enumerate(ids)}
            missing = [s.id for s in samples if str(s.id) not in order]
            if missing:
                raise InputSpecError(f"no cells segmented in {missing}; cannot predict")
            proba = np.asarray(proba)[[order[str(s.id)] for s in samples]]
        else:
            proba = self.estimator.predict_proba(pd.concat(tables, ignore_index=True))
        return self._ordered(np.asarray(proba, dtype=float))

    def _extract(self, sample: Any, number: int) -> pd.DataFrame:
        from features import extract_sample
        cells, image_row = extract_sample(sample, self.feature_config, image_number=number)
        return cells if self.granularity == "cell" else image_row

    def _ordered(self, proba: np.ndarray) -> tuple[tuple[str, ...], np.ndarray]:
        est_classes = [str(c) for c in self.estimator.classes_]
        return self.classes, proba[:, [est_classes.index(c) for c in self.classes]]


class DeepPredictor(_Base):
    """A ``deep.DeepClassifier`` (it applies its own transforms)."""

    def __init__(self, model_dir: Path, meta: dict[str, Any]) -> None:
        super().__init__(meta)
        from deep import DeepClassifier
        self.model = DeepClassifier.load(model_dir / MODEL_SUBDIR)

    def predict_proba(self, samples: Sequence[Any]) -> tuple[tuple[str, ...], np.ndarray]:
        """Return ``(classes, proba)`` for the samples' images."""
        self._check(samples)
        proba = np.asarray(self.model.predict_proba([s.image for s in samples]), dtype=float)
        est_classes = [str(c) for c in self.model.classes_]
        return self.classes, proba[:, [est_classes.index(c) for c in self.classes]]


def load_predictor(model_dir: str | Path) -> Predictor:
    """Load the model of a MODEL_DIR written by :func:`serve.export_model`.

    Raises
    ------
    ModelDirError
        ``serve.json`` missing, invalid or of an unknown kind.
    """
    model_dir = Path(model_dir)
    meta = read_spec(model_dir)
    cls = ClassicalPredictor if meta["kind"] == "classical" else DeepPredictor
    logger.info("loading %s model from %s", meta["kind"], model_dir)
    return cls(model_dir, meta)


def top_k(classes: Sequence[str], proba: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
    """Per row, the ``k`` most probable ``(class, probability)`` pairs (ties: class order)."""
    k = min(int(k), len(classes))
    order = np.argsort(-proba, axis=1, kind="stable")[:, :k]
    return [[(str(classes[j]), float(row[j])) for j in idx] for row, idx in zip(proba, order)]
