"""The memory-mapped cell crop cache of a run: every crop cut once, reused by every model and fold.

``CropCache.build`` segments each image with the features' settings, cuts one crop per nucleus
(:func:`deep.crops.cut_crops`) and writes ``crops.npy`` (float16 ``(N, C, S, S)``, opened with
``mmap_mode="r"``), ``cells.parquet`` and, last, ``crops.json``; a folder per settings key, so
models with the same crop settings share one and a rerun reuses it.

With ``cells_per_image`` only the cells a model will use are cut: at most that many per image,
chosen by :func:`deep.crops.choose_cells` with the seed (the same cells for training and test,
and for a served image), so ``N = sum(min(cells of the image, cells_per_image))`` and the file is
``N * C * S * S * 2`` bytes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cellcompare import atomic
from cellcompare.progress import progress_bar

from .crops import (
    CROP_DTYPE,
    CROP_FACTOR,
    CropError,
    auto_crop_size,
    choose_cells,
    cut_crops,
    nucleus_centers,
    segment_for_crops,
)
from .inputs import sample_input

__all__ = ["CropCache", "CropSettings"]

log = logging.getLogger(__name__)
_CACHE_FORMAT = 1


@dataclass(frozen=True)
class CropSettings:
    """What a crop cache depends on (its key).

    ``cells_per_image`` and ``seed`` bound the cache (``None``: every cell, and the seed plays
    no part); an unbounded cache keeps the key it had before the bound existed.
    """

    crop_size: int | None
    mask: bool
    channels: tuple[int, ...] | None
    segmentation: dict
    cells_per_image: int | None = None
    seed: int | None = None

    def key(self) -> str:
        fields = {"format": _CACHE_FORMAT, "crop_size": self.crop_size, "mask": self.mask,
                  "channels": self.channels, "segmentation": self.segmentation}
        if self.cells_per_image is not None:
            fields.update(cells_per_image=self.cells_per_image, seed=self.seed)
        text = json.dumps(fields, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


class CropCache:
    """Every cell crop of a dataset in one memory-mapped ``crops.npy`` plus ``cells.parquet``.

    Build with :meth:`build` (cuts what is missing, reuses a finished cache with the same
    settings). ``crops`` is a read-only ``np.memmap`` of float16 ``(N, C, S, S)``; ``cells`` has
    one row per crop (``Metadata_sample_id``, ``Metadata_ObjectNumber``, centre X/Y).
    """

    CROPS = "crops.npy"
    CELLS = "cells.parquet"
    META = "crops.json"

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        meta_path = self.folder / self.META
        if not meta_path.is_file():
            raise CropError(f"{self.folder} holds no finished crop cache ({self.META} missing)")
        self.meta = json.loads(meta_path.read_text())
        self.crop_size = int(self.meta["crop_size"])
        self.crops = np.load(self.folder / self.CROPS, mmap_mode="r")
        self.cells = pd.read_parquet(self.folder / self.CELLS)
        ids = self.cells["Metadata_sample_id"].astype(str).to_numpy()
        #: str ``(N,)`` the image of each crop.
        self.image_ids = ids
        self._rows = pd.Series(np.arange(len(ids))).groupby(ids).apply(lambda s: s.to_numpy()).to_dict()

    @classmethod
    def build(cls, folder: str | Path, dataset: Any, feature_config: Any, *,
              sample_ids: Sequence[str] | None = None, crop_size: int | None = None,
              channels: Sequence[int] | None = None, mask: bool = False,
              cells_per_image: int | None = None, seed: int = 0, progress: bool = True) -> CropCache:
        """Cut (or reopen) the crop cache of ``dataset`` under ``folder/<settings key>/``.

        Parameters
        ----------
        folder : str or Path
            Parent folder of the caches (e.g. ``{output}/crops``).
        dataset : datasets.ImageDataset
            ``get(sample_id)`` returns a ``Sample``; ``channel_names`` names its channels.
        feature_config : features.FeatureConfig
            Segmentation settings (the features').
        sample_ids : sequence of str, optional
            Images to cut (default: all of ``dataset.ids``).
        crop_size : int, optional
            Crop side; ``None`` = :func:`auto_crop_size` of the median nucleus diameter over the
            first (up to 8) images.
        channels : sequence of int, optional
            Channel positions kept in the crops (a gate channel is left out here).
        mask : bool
            Zero the pixels outside each cell's mask.
        cells_per_image : int, optional
            Cut at most this many cells per image (:func:`deep.crops.choose_cells` with
            ``seed``); ``None`` cuts every cell.
        seed : int
            Seed of the choice (with ``cells_per_image``).
        progress : bool
            Show a progress bar (terminal only).
        """
        ids = [str(s) for s in (dataset.ids if sample_ids is None else sample_ids)]
        names = [str(c) for c in getattr(dataset, "channel_names", ())] or None
        segmentation = feature_config.to_dict() if hasattr(feature_config, "to_dict") else dict(feature_config)
        bound = None if cells_per_image is None else int(cells_per_image)
        settings = CropSettings(crop_size, bool(mask), None if channels is None else tuple(int(c) for c in channels),
                                {k: segmentation.get(k) for k in _SEGMENTATION_KEYS}, bound,
                                None if bound is None else int(seed))
        target = Path(folder) / settings.key()
        if (target / cls.META).is_file():
            cache = cls(target)
            if sorted(cache.meta.get("sample_ids", [])) == sorted(ids):
                log.info("reusing %d cell crops in %s", len(cache.cells), target)
                return cache
            log.warning("crop cache %s was cut for other images; cutting again", target)
        if target.exists():
            shutil.rmtree(target)
        target.mkdir(parents=True)
        masks = {}
        root = getattr(dataset, "root", None)          # bring-your-own masks are relative to it
        if crop_size is None:
            diam = []
            for sid in ids[:8]:
                masks[sid] = segment_for_crops(dataset.get(sid), feature_config, names, root=root)
                diam.append(nucleus_centers(masks[sid][0])[2])
            crop_size = auto_crop_size(np.concatenate(diam) if diam else np.zeros(0))
            log.info("crop size %d px (%.1f x the median nucleus diameter)", crop_size, CROP_FACTOR)
        parts, tables = [], []
        for sid in progress_bar(ids, desc="cell crops", unit="image", enabled=progress, leave=False):
            sample = dataset.get(sid)
            nuclei, cells = masks.pop(sid, None) or segment_for_crops(sample, feature_config, names,
                                                                      root=root)
            obj, centers, _ = nucleus_centers(nuclei)
            keep = choose_cells(obj, centers, bound, int(seed))
            obj, centers = obj[keep], centers[keep]
            image = sample_input(sample, settings.channels)
            parts.append(cut_crops(image, centers, crop_size, cells=cells if mask else None,
                                   ids=obj).astype(CROP_DTYPE))
            tables.append(pd.DataFrame({"Metadata_sample_id": sid, "Metadata_ObjectNumber": obj,
                                        "Metadata_Location_Center_X": centers[:, 1],
                                        "Metadata_Location_Center_Y": centers[:, 0]}))
        n_channels = parts[0].shape[1] if parts else 0
        total = sum(len(p) for p in parts)
        tmp = target / f".{cls.CROPS}.{os.getpid()}.tmp"
        array = np.lib.format.open_memmap(tmp, mode="w+", dtype=CROP_DTYPE,
                                          shape=(total, n_channels, crop_size, crop_size))
        start = 0
        for part in parts:
            array[start:start + len(part)] = part
            start += len(part)
        array.flush()
        del array
        os.replace(tmp, target / cls.CROPS)
        table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(
            columns=["Metadata_sample_id", "Metadata_ObjectNumber", "Metadata_Location_Center_X",
                     "Metadata_Location_Center_Y"])
        with atomic.atomic_path(target / cls.CELLS) as tmp_table:
            table.to_parquet(tmp_table, index=False)
        atomic.write_json(target / cls.META, {"crop_size": crop_size, "mask": bool(mask),
                                              "channels": settings.channels, "n_crops": total,
                                              "cells_per_image": bound, "seed": settings.seed,
                                              "segmentation": settings.segmentation,
                                              "sample_ids": ids})  # last: marks the cache finished
        log.info("cut %d cell crops of %d px from %d images (%s) into %s", total, crop_size, len(ids),
                 "every cell" if bound is None else f"at most {bound} per image", target)
        return cls(target)

    def rows(self, sample_ids: Sequence[str]) -> np.ndarray:
        """Positions of the crops of ``sample_ids`` (in that order; images without cells add none)."""
        empty = np.zeros(0, dtype=np.int64)
        parts = [self._rows.get(str(s), empty) for s in sample_ids]
        return np.concatenate(parts).astype(np.int64) if parts else empty


_SEGMENTATION_KEYS = ("dna_channel", "cyto_channel", "diameter", "threshold_method", "threshold_classes",
                      "threshold_middle", "threshold_strategy", "adaptive_window", "smoothing_sigma",
                      "min_area", "max_area", "declump", "exclude_border", "masks",
                      "cell_threshold_scale", "regularization", "whole_object")
