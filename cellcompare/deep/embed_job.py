"""``cellcompare embed``: a dataset's embeddings written as feature tables.

``embed_dataset`` reads every image once (crops through a bounded ``CropCache``, whole images
through an ``InputCache``), embeds them with ResNet18's ImageNet weights (``imagenet``) or a
self-supervised backbone pretrained on the dataset itself (``ssl``: no labels are read), and
writes ``{out}/image/`` and ``{out}/cells/`` shards under the feature-table contract
(``features.embedding_tables``) with ``{out}/embedding.json`` (source, weights, settings),
written last. Within a comparison the same tables are made per run or per fold
(``comparison.representation``); this is the one-off export for other tools (pycytominer).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
from pathlib import Path
from typing import Any

from cellcompare import atomic

__all__ = ["embed_dataset"]

log = logging.getLogger(__name__)


def embed_dataset(dataset_dir: str | Path, out: str | Path, *, source: str = "imagenet",
                  weights: str = "imagenet", input: str = "cells", cells_per_image: int | None = 16,
                  image_size: int | None = None, crop_size: int | None = None, crop_mask: bool = False,
                  arch: str = "resnet18", ssl: dict | None = None,
                  feature_config: Any = None, dataset_options: dict | None = None, seed: int = 0,
                  batch_size: int = 128) -> Path:
    """Embed every image of a dataset and write the tables; returns ``out``.

    Parameters
    ----------
    dataset_dir : str or Path
        Any layout ``datasets.open_dataset`` reads (``dataset_options`` are its arguments).
    out : str or Path
        Output folder: ``image/``, ``cells/`` (``input: cells``), ``embedding.json``, and the
        caches it read from (``crops/``, ``inputs/``, ``ssl/``), reused by a rerun.
    source : {"imagenet", "ssl"}
        The network (``comparison.representation`` explains both).
    weights, input, cells_per_image, image_size, crop_size, crop_mask, arch, ssl, batch_size
        ``comparison.representation.EmbeddingConfig`` fields.
    feature_config : features.FeatureConfig, optional
        Segmentation of the crops (default: ``FeatureConfig()``, channels and size chosen on the
        data and logged).
    seed : int
        The choice of cells and the SSL pretraining.
    """
    from cellcompare.datasets import open_dataset
    from cellcompare.features import FeatureConfig
    from cellcompare.features.embedding_tables import (
        embedding_tables,
        index_metadata,
        write_embedding_tables,
    )
    from cellcompare.features.plan import plan_dataset

    from .crop_cache import CropCache
    from .crops import CellCrops
    from .embed import imagenet_embedder, ssl_embedder
    from .embed_config import EmbeddingConfig
    from .input_cache import InputCache, InputSettings

    if source not in ("imagenet", "ssl"):
        raise ValueError(f"source must be 'imagenet' or 'ssl', found {source!r}")
    settings = EmbeddingConfig(input=input, weights=weights, arch=arch, image_size=image_size,
                               cells_per_image=cells_per_image, crop_size=crop_size, crop_mask=crop_mask, batch_size=batch_size, ssl=dict(ssl or {}))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ds = open_dataset(dataset_dir, **(dataset_options or {}))
    ids = [str(s) for s in ds.ids]
    cells = None
    if settings.input == "cells":
        fconfig, _ = plan_dataset(ds, feature_config or FeatureConfig())
        crops = CropCache.build(out / "crops", ds, fconfig, sample_ids=ids, crop_size=settings.crop_size,
                                mask=settings.crop_mask, cells_per_image=settings.cells_per_image, seed=seed)
        rows = crops.rows(ids)
        images, cells = CellCrops(crops.crops, rows), crops.cells.iloc[rows].reset_index(drop=True)
        size, inputs_key = settings.image_size or crops.crop_size, crops.folder.name
    else:
        size = settings.image_size or 224
        from .config import DeepConfig

        cache = InputCache.build(out / "inputs", ds, InputSettings.of(DeepConfig(image_size=size, resize="pad")),
                                 sample_ids=ids)
        images, inputs_key = cache.images(ids), cache.folder.name
    if source == "imagenet":
        embedder = imagenet_embedder(images, weights=settings.weights, image_size=size)
    else:
        from .ssl import pretrain

        key = hashlib.sha256(json.dumps([inputs_key, ids]).encode()).hexdigest()[:20]
        pretrained = pretrain(images, settings.deep_config(seed).replace(image_size=size),
                              key=key, folder=out / "ssl")
        embedder = ssl_embedder(pretrained, image_size=size)
    values = embedder.embed(images, batch_size=settings.batch_size, progress=True)
    image, cell_table = embedding_tables(values, cells, index_metadata(ds.index), source, ids)
    write_embedding_tables(out, image, cell_table)
    atomic.write_json(out / "embedding.json", {
        "source": source, "dim": int(values.shape[1]), "image_size": int(size),
        "settings": dataclasses.asdict(settings), "weights": embedder.info,
        "images": len(image), "cells": None if cell_table is None else len(cell_table), "seed": seed})
    log.info("wrote %s embeddings (%d dims) of %d images to %s", source, values.shape[1], len(image), out)
    return out
