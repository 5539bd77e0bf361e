"""The frozen run context: everything a (model, fold) unit and an export read, built once."""

from __future__ import annotations

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
    """

    config: CompareConfig
    dataset: Any
    classes: tuple[str, ...]
    folds: pd.DataFrame
    image_table: pd.DataFrame | None = None
    cell_table: pd.DataFrame | None = None
    channel_index: tuple[int, ...] | None = None
    feature_config: Any = None

    def fold_data(self, sample_ids: Sequence[str]) -> FoldData:
        """One side of a fold: these images with their labels, groups and inputs."""
        rows = self.folds.set_index("sample_id").loc[list(sample_ids)]
        return FoldData(sample_ids=np.asarray(sample_ids, dtype=str),
                        y=rows["label"].to_numpy(dtype=str), groups=rows["group"].to_numpy(dtype=str),
                        dataset=self.dataset, image_table=self.image_table,
                        cell_table=self.cell_table, classes=self.classes)

    def split(self, fold: int) -> tuple[FoldData, FoldData]:
        """``(train, test)`` of fold ``fold`` (``splits.HOLDOUT``: all CV images vs the hold-out)."""
        train_ids, test_ids = fold_ids(self.folds, fold)
        return self.fold_data(train_ids), self.fold_data(test_ids)

    def adapter(self, spec: ModelSpec) -> ModelAdapter:
        """The unfitted adapter of ``spec`` with the run's seed; deep models get the channel subset."""
        params = dict(spec.params)
        if model_kind(spec.name) == "deep" and self.channel_index is not None:
            params.setdefault("channels", list(self.channel_index))
        return build_adapter(spec.name, granularity=spec.granularity, params=params,
                             seed=self.config.seed)

    @property
    def channel_names(self) -> list[str]:
        """The dataset's channel names: what every image, trained on or served, has."""
        return [str(c) for c in self.dataset.channel_names]
