"""Predictors: load a MODEL_DIR once, predict class probabilities for in-memory Samples."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Protocol, Sequence

import numpy as np
import pandas as pd

from cellcompare.proba import align_columns, top_k
from cellcompare.serve.errors import InputSpecError
from cellcompare.serve.model_dir import MODEL_SUBDIR, SPEC_FILE, InputSpec, read_spec

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
    def __init__(self, model_dir: Path, meta: dict[str, Any]) -> None:
        self.meta = meta
        self.classes = tuple(str(c) for c in meta["classes"])
        self.input_spec = InputSpec.from_dict(meta["input"], source=Path(model_dir) / SPEC_FILE)

    def _check(self, samples: Sequence[Any]) -> None:
        for s in samples:
            image = np.asarray(s.image)
            source = str(getattr(s, "id", "image"))
            check_image(image, self.input_spec, source)
            if image.dtype.kind == "f" and not np.isfinite(image).all():
                raise InputSpecError(f"{source}: image holds {int((~np.isfinite(image)).sum())} "
                                     "NaN or infinite pixel values")

    def _ordered(self, proba: np.ndarray, model_classes: Sequence) -> tuple[tuple[str, ...], np.ndarray]:
        bad = ~np.isfinite(proba).all(axis=1)
        if bad.any():
            raise InputSpecError(f"the model gave no finite probabilities for {int(bad.sum())} "
                                 "image(s) (nothing it can measure, e.g. a blank image)")
        return self.classes, align_columns(proba, model_classes, self.classes)


class ClassicalPredictor(_Base):
    """Feature extraction with the stored ``FeatureConfig`` + a classical estimator."""

    def __init__(self, model_dir: Path, meta: dict[str, Any]) -> None:
        super().__init__(model_dir, meta)
        from cellcompare import classical
        from cellcompare.features import FeatureConfig
        self.estimator = classical.load_model(model_dir / MODEL_SUBDIR)
        self.feature_config = FeatureConfig.from_dict(meta["feature_config"],
                                                      source=Path(model_dir) / SPEC_FILE)
        self.granularity = meta.get("granularity", "image")

    def predict_proba(self, samples: Sequence[Any]) -> tuple[tuple[str, ...], np.ndarray]:
        """Extract features per sample (``classical.inputs``) and return ``(classes, proba)``."""
        from cellcompare.classical.inputs import sample_features
        self._check(samples)
        tables = [sample_features(s, self.feature_config, channel_names=self.input_spec.channels,
                                  granularity=self.granularity, image_number=i + 1)
                  for i, s in enumerate(samples)]
        if self.granularity == "cell":
            cells = pd.concat(tables, ignore_index=True)
            ids, proba = self.estimator.predict_image_proba(cells)
            order = {str(k): i for i, k in enumerate(ids)}
            missing = [s.id for s in samples if str(s.id) not in order]
            if missing:
                raise InputSpecError(f"no cells segmented in {missing}; cannot predict")
            proba = np.asarray(proba)[[order[str(s.id)] for s in samples]]
        else:
            table = pd.concat(tables, ignore_index=True)
            empty = table["Metadata_sample_id"][table["Metadata_Object_Count"] == 0].tolist() \
                if "Metadata_Object_Count" in table else []
            if empty:
                raise InputSpecError(f"no cells segmented in {empty} (blank or out-of-focus "
                                     "image?); cannot measure features to predict")
            proba = self.estimator.predict_proba(table)
        return self._ordered(np.asarray(proba, dtype=float), self.estimator.classes_)


class DeepPredictor(_Base):
    """A ``deep.DeepClassifier`` on ``deep.inputs.sample_input`` (scaled, channel subset)."""

    def __init__(self, model_dir: Path, meta: dict[str, Any]) -> None:
        super().__init__(model_dir, meta)
        from cellcompare.deep import DeepClassifier
        self.model = DeepClassifier.load(model_dir / MODEL_SUBDIR)
        index = meta.get("channel_index")
        self.channel_index = None if index is None else [int(c) for c in index]

    def predict_proba(self, samples: Sequence[Any]) -> tuple[tuple[str, ...], np.ndarray]:
        """Return ``(classes, proba)`` for the samples' images (cell models: mean of their cells)."""
        from cellcompare.deep.inputs import sample_input
        self._check(samples)
        if self.meta.get("granularity") == "cell":
            return self._ordered(self._cell_proba(samples), self.model.classes_)
        images = [sample_input(s, self.channel_index) for s in samples]
        proba = np.asarray(self.model.predict_proba(images), dtype=float)
        return self._ordered(proba, self.model.classes_)

    def _cell_proba(self, samples: Sequence[Any]) -> np.ndarray:
        """Mean probabilities of every sample's cells (``DeepClassifier.predict_image_proba``).

        Crops are cut with the stored segmentation (``deep.cells.CellInputs.from_samples``);
        ``normalize: group`` divides by the mean of the served crops of the same
        ``sample.group`` (samples without a group form one group), as the comparison did for a
        test plate.
        """
        from cellcompare.deep.cells import CellInputs
        from cellcompare.features import FeatureConfig

        cfg = self.model.config
        cells = CellInputs.from_samples(samples, FeatureConfig.from_dict(self.meta["feature_config"]),
                                        crop_size=int(cfg.crop_size), channels=self.channel_index,
                                        mask=cfg.crop_mask, channel_names=self.input_spec.channels)
        missing = [str(s.id) for s in samples if str(s.id) not in set(cells.images)]
        if missing:
            raise InputSpecError(f"no cells segmented in {missing}; cannot predict")
        ids, proba = self.model.predict_image_proba(cells)
        order = {str(k): i for i, k in enumerate(ids)}
        return proba[[order[str(s.id)] for s in samples]]


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


def top_pairs(classes: Sequence[str], proba: np.ndarray, k: int) -> list[list[tuple[str, float]]]:
    """Per row, the ``k`` most probable ``(class, probability)`` pairs (``proba.top_k``)."""
    labels, probs = top_k(proba, classes, k)
    return [[(str(c), float(p)) for c, p in zip(lrow, prow)] for lrow, prow in zip(labels, probs)]
