"""The frozen run context: everything a (model, fold) unit and an export read, built once."""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from cellcompare.comparison.config import CompareConfig, ModelSpec
from cellcompare.comparison.models import (
    FoldData,
    ModelAdapter,
    build_adapter,
    model_kind,
)
from cellcompare.comparison.splits import fold_ids

__all__ = ["RunContext"]


@dataclass(frozen=True, eq=False)
class RunContext:
    """What one comparison run knows once the dataset, features and folds are ready.

    Attributes
    ----------
    config : CompareConfig
        The run's configuration.
    dataset : datasets.ImageDataset
        The opened dataset (images are read on access).
    classes : tuple of str
        The global class order of every probability table.
    folds : pd.DataFrame
        ``sample_id, label, group, fold`` (``folds.csv``).
    image_table, cell_table : pd.DataFrame or None
        Feature tables (``None`` when no classical model runs).
    channel_index : tuple of int or None
        Positions of ``dataset.channels`` among the dataset's channels (deep models' input).
    feature_config : features.FeatureConfig or None
        The stored feature settings (classical models' input).
    level : {"image", "cell"}
        ``cell`` (``labels.level``): folds, labels and predictions are per cell; ``folds``'
        ``sample_id`` holds cell ids and ``cell_table`` the labelled, leak-guarded cells.
    """

    config: CompareConfig
    dataset: Any
    classes: tuple[str, ...]
    folds: pd.DataFrame
    image_table: pd.DataFrame | None = None
    cell_table: pd.DataFrame | None = None
    channel_index: tuple[int, ...] | None = None
    feature_config: Any = None
    level: str = "image"

    def fold_data(self, sample_ids: Sequence[str]) -> FoldData:
        """One side of a fold: these images with their labels, groups and inputs."""
        rows = self.folds.set_index("sample_id").loc[list(sample_ids)]
        return FoldData(sample_ids=np.asarray(sample_ids, dtype=str),
                        y=rows["label"].to_numpy(dtype=str), groups=rows["group"].to_numpy(dtype=str),
                        dataset=self.dataset, image_table=self.image_table,
                        cell_table=self.cell_table, classes=self.classes, level=self.level)

    def split(self, fold: int) -> tuple[FoldData, FoldData]:
        """``(train, test)`` of fold ``fold`` (``splits.HOLDOUT``: all CV images vs the hold-out)."""
        train_ids, test_ids = fold_ids(self.folds, fold)
        return self.fold_data(train_ids), self.fold_data(test_ids)

    def adapter(self, spec: ModelSpec) -> ModelAdapter:
        """The unfitted adapter of ``spec`` with the run's seed; deep models get the channel subset."""
        params = dict(spec.params)
        deep = model_kind(spec.name) == "deep"
        if deep and self.channel_index is not None:  # a gate channel is already left out of it
            params.setdefault("channels", list(self.channel_index))
        adapter = build_adapter(spec.name, granularity=spec.granularity, params=params,
                                seed=self.config.seed)
        if deep and spec.granularity == "cell":
            adapter.crops = self.crop_cache(spec)
        return adapter

    @property
    def segmentation_config(self) -> Any:
        """The ``features.FeatureConfig`` whose segmentation cell crops use (the features')."""
        if self.feature_config is not None:
            return self.feature_config
        from cellcompare.features import FeatureConfig

        return FeatureConfig.from_dict(dict(self.config.features))

    def crop_cache(self, spec: ModelSpec) -> Any:
        """The run's ``deep.crop_cache.CropCache`` for a cell-granularity deep model (cut once).

        Caches live in ``{output}/crops/<settings key>/``; models with the same crop settings
        (size, mask, channels) share one.
        """
        from pathlib import Path

        from cellcompare.deep.crop_cache import CropCache

        return CropCache.build(Path(self.config.output) / "crops", self.dataset, self.segmentation_config,
                               sample_ids=self.image_ids,
                               crop_size=spec.params.get("crop_size"), channels=self.channel_index,
                               mask=bool(spec.params.get("crop_mask", False)),
                               progress=bool(spec.params.get("progress", True)))

    def gallery_crops(self) -> Any:
        """Crops for the report's cell gallery: a deep cell model's cache, else default crops."""
        spec = next((m for m in self.config.models
                     if model_kind(m.name) == "deep" and m.granularity == "cell"), None)
        return self.crop_cache(spec or ModelSpec("smallcnn", "gallery", "cell", {"progress": False}))

    @property
    def image_ids(self) -> list[str]:
        """The images of the folds (a cell id ``{image}#{object}`` names its image first)."""
        ids = self.folds["sample_id"].astype(str)
        if self.level == "cell":
            ids = ids.str.rsplit("#", n=1).str[0]
        return list(dict.fromkeys(ids))

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
