"""The frozen run context: everything a (model, fold) unit and an export read, built once."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cellcompare.comparison.config import CompareConfig, ModelSpec
from cellcompare.comparison.adapters import (
    FoldData,
    ModelAdapter,
    build_adapter,
    input_settings,
    model_kind,
)
from cellcompare.comparison.splits import fold_ids

__all__ = ["RunContext"]


@dataclass(frozen=True, eq=False)
class RunContext:
    """What one comparison run knows once the dataset, features, task and folds are ready.

    Attributes
    ----------
    config : CompareConfig
        The run's configuration.
    dataset : datasets.ImageDataset
        The opened dataset (images are read on access).
    task : comparison.task.ImageTask or CellTask
        What a unit is (an image, or a cell of ``labels.level: cell``), with the classes, the
        feature tables and the channels the models see.
    folds : pd.DataFrame
        ``sample_id, label, group, fold`` (``folds.csv``), one row per unit of ``task``.
    feature_config : features.FeatureConfig
        ``CompareConfig.feature_config()``: the features' settings, whose segmentation cell
        crops also use.
    stages : comparison.stages.StageRecorder, optional
        Where building (or reopening) the deep caches is timed, as stages ``deep input cache``
        and ``deep crop cache`` (also counted inside the unit that asked first).
    """

    config: CompareConfig
    dataset: Any
    task: Any
    folds: pd.DataFrame
    feature_config: Any
    stages: Any = None

    def _stage(self, name: str) -> Any:
        return self.stages.stage(name) if self.stages is not None else contextlib.nullcontext()

    @property
    def classes(self) -> tuple[str, ...]:
        """The global class order of every probability table."""
        return self.task.classes

    @property
    def channel_index(self) -> tuple[int, ...] | None:
        """Positions of the dataset channels deep models see (``None``: all)."""
        return self.task.channel_index

    def fold_data(self, sample_ids: Sequence[str]) -> FoldData:
        """One side of a fold: these units with their labels, groups and the task's inputs."""
        rows = self.folds.set_index("sample_id").loc[list(sample_ids)]
        return FoldData(sample_ids=np.asarray(sample_ids, dtype=str),
                        y=rows["label"].to_numpy(dtype=str), groups=rows["group"].to_numpy(dtype=str),
                        task=self.task, dataset=self.dataset)

    def split(self, fold: int) -> tuple[FoldData, FoldData]:
        """``(train, test)`` of fold ``fold`` (``splits.HOLDOUT``: all CV units vs the hold-out)."""
        train_ids, test_ids = fold_ids(self.folds, fold)
        return self.fold_data(train_ids), self.fold_data(test_ids)

    def adapter(self, spec: ModelSpec) -> ModelAdapter:
        """The unfitted adapter of ``spec`` with the run's seed and the inputs it needs.

        Deep models get the channel subset (a gate channel is already left out of it) and, at
        ``granularity: cell``, the run's crop cache; at ``granularity: image`` the run's input
        cache (:meth:`input_cache`) when their adapter reads one. A classical model on
        embeddings gets its representation (:meth:`embeddings`).
        """
        params = dict(spec.params)
        inputs: dict[str, Any] = {}
        if spec.representation != "cellprofiler":
            inputs["representation"] = self.embeddings(spec)
        if model_kind(spec.name) == "deep":
            if self.channel_index is not None:
                params.setdefault("channels", list(self.channel_index))
            if spec.granularity == "cell":
                inputs["crops"] = self.crop_cache(spec)
            settings = input_settings(spec.name, spec.granularity, params)
            if settings is not None:
                inputs["input_cache"] = self.input_cache(settings, progress=bool(params.get("progress", True)))
            if str(params.get("weights")) == "ssl":
                inputs["ssl"] = self.ssl_inputs
        return build_adapter(spec.name, granularity=spec.granularity, params=params,
                             seed=self.config.seed, **inputs)

    def crop_cache(self, spec: ModelSpec, params: dict | None = None) -> Any:
        """The run's ``deep.crop_cache.CropCache`` for a cell-granularity deep model (cut once).

        Caches live in ``{output}/crops/<settings key>/``; models with the same crop settings
        (size, mask, channels, and the task's bound on cells per image with the model's seed,
        ``task.crop_limit``) share one. ``params`` (default ``spec.params``) holds the
        settings: ``crop_size``, ``crop_mask``, ``cells_per_image``, ``seed``, ``progress``.
        """
        from cellcompare.deep.crop_cache import CropCache

        params = spec.params if params is None else params
        with self._stage("deep crop cache"):
            return CropCache.build(
                Path(self.config.output) / "crops", self.dataset, self.feature_config,
                sample_ids=self.image_ids, crop_size=params.get("crop_size"),
                channels=self.channel_index, mask=bool(params.get("crop_mask", False)),
                cells_per_image=self.task.crop_limit(params.get("cells_per_image")),
                seed=int(params.get("seed", self.config.seed)),
                progress=bool(params.get("progress", True)))

    def embeddings(self, spec: ModelSpec) -> Any:
        """The ``comparison.representation.Embeddings`` of a classical model on embeddings.

        Cell crops come from the run's crop cache with the embedding's crop settings and the
        run's seed; whole images from its input cache at the embedding's size. Tables and SSL
        backbones are kept under ``{output}/embeddings/``.
        """
        from cellcompare.comparison.representation import EmbeddingInputs, Embeddings, source_of
        from cellcompare.deep import DeepConfig
        from cellcompare.deep.input_cache import InputSettings
        settings = spec.check_representation()
        crops, images, inputs_key = None, None, {}
        if settings.input == "cells":
            crops = self.crop_cache(spec, {"crop_size": settings.crop_size, "crop_mask": settings.crop_mask,
                                           "cells_per_image": settings.cells_per_image,
                                           "progress": False})
            inputs_key = {"crops": crops.folder.name}
        else:
            config = DeepConfig(image_size=settings.image_size or 224, resize="pad")
            cache = self.input_cache(InputSettings.of(config, self.channel_index), progress=False)
            images, inputs_key = cache.images, {"inputs": cache.folder.name}
        key = hashlib.sha256(json.dumps([self.data_digest, inputs_key], sort_keys=True).encode()).hexdigest()[:20]
        inputs = EmbeddingInputs(self.image_metadata, crops, images,
                                 Path(self.config.output) / "embeddings", key, self.ssl_inputs)
        return Embeddings(source_of(spec.representation), settings, inputs, seed=self.config.seed)

    def input_cache(self, settings: Any, *, progress: bool = True) -> Any:
        """The run's ``deep.input_cache.InputCache`` of the fold images at ``settings`` (decoded once).

        Caches live in ``{output}/inputs/<settings key>/``; models with the same size, resize mode,
        channels and dtype share one, and a rerun reuses it.
        """
        from cellcompare.deep.input_cache import InputCache

        with self._stage("deep input cache"):
            return InputCache.build(Path(self.config.output) / "inputs", self.dataset, settings,
                                    sample_ids=self.image_ids, jobs=int(self.config.jobs or 1),
                                    progress=progress)

    def gallery_crops(self) -> Any:
        """Crops for the report's cell gallery: a deep cell model's cache, else default crops."""
        spec = next((m for m in self.config.models
                     if model_kind(m.name) == "deep" and m.granularity == "cell"), None)
        return self.crop_cache(spec or ModelSpec("smallcnn", "gallery", "cell", {"progress": False}))

    @property
    def image_ids(self) -> list[str]:
        """The images of the folds, in fold order (a cell's image for a cell task)."""
        return list(dict.fromkeys(self.task.images_of(self.folds["sample_id"].astype(str))))

    @functools.cached_property
    def ssl_inputs(self) -> Any:
        """``comparison.adapters.SSLInputs`` of this run (``weights: ssl`` and ``embeddings:ssl``)."""
        from cellcompare.comparison.adapters import SSLInputs

        images = self.task.images_of(self.folds["sample_id"].astype(str))
        groups = dict(zip(map(str, images), self.folds["group"].astype(str)))
        return SSLInputs(Path(self.config.output) / "ssl", self.data_digest, tuple(self.image_ids), groups)

    @functools.cached_property
    def image_metadata(self) -> pd.DataFrame:
        """Per-image ``Metadata_*`` columns of every embedding table
        (``features.embedding_tables.index_metadata`` of the dataset index), made once."""
        from cellcompare.features.embedding_tables import index_metadata

        return index_metadata(self.dataset.index)

    @functools.cached_property
    def data_digest(self) -> str:
        """:func:`data_key` of this run, computed once (it stats every file of the dataset)."""
        return data_key(self)

    @property
    def channel_names(self) -> list[str]:
        """The dataset's channel names: what every image, trained on or served, has."""
        return [str(c) for c in self.dataset.channel_names]


def data_key(context: RunContext) -> str:
    """Digest of the folds (ids, labels, folds), the dataset's files (sizes, mtimes) and channels.

    Finished units and exported models record it: one made before images were added, changed
    or relabelled, or before the folds or channels changed, is made again instead of reused.
    """
    ds = context.dataset
    folds = context.folds[["sample_id", "label", "fold"]].astype(str).to_numpy().tolist()
    sources = [ds.source(i) for i in range(len(ds))] if hasattr(ds, "source") else []
    payload = {"folds": folds, "sources": sources, "channels": context.config.dataset.channels}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:20]
