"""What a classical model reads: CellProfiler features, or a network's embeddings.

A classical head (``svm``, ``xgboost``, ``linear_svm``) sees a feature table. Its
``representation`` says which:

* ``cellprofiler`` (the default): the extracted per-image or per-cell table;
* ``embeddings:imagenet``: ResNet18 with ImageNet weights, frozen. One function for every fold
  (no label is read), so the run computes the tables once and caches them under
  ``{output}/embeddings/<key>/`` (``features.embedding_tables``);
* ``embeddings:ssl``: a self-supervised backbone pretrained in each fold on that fold's training
  images (``deep.ssl.pretrain``; with ``ssl: {use_test_images: true}`` on its test images too,
  transductive: one backbone pretrained on every image of the run), which then embeds both
  sides of the fold.

Each is an object with ``fit(train)``, ``table(data, granularity)`` and ``record()``
(:class:`CellProfiler`, :class:`Embeddings`); a model's ``embedding:`` mapping is an
:class:`EmbeddingConfig`. Embeddings are of cell crops (``input: cells``, the run's bounded crop
cache, ``cells_per_image`` per image; an image's row is the mean of its cells', as extraction's
image rows are) or of whole images (``input: image``, the run's decoded input cache).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pandas as pd

from cellcompare.comparison.cellids import CELL_COLUMN, cell_id
from cellcompare.config import ConfigError
from cellcompare.deep.embed_config import EmbeddingConfig

__all__ = ["CELLPROFILER", "REPRESENTATIONS", "CellProfiler", "EmbeddingConfig", "Embeddings",
           "check_representation", "finetuned_tables", "source_of", "write_finetuned"]

log = logging.getLogger(__name__)

CELLPROFILER = "cellprofiler"
#: Representations a classical head can read.
REPRESENTATIONS = (CELLPROFILER, "embeddings:imagenet", "embeddings:ssl")


def source_of(representation: str) -> str | None:
    """The embedding source of ``representation`` (``None`` for CellProfiler features).

    Examples
    --------
    >>> source_of("embeddings:ssl"), source_of("cellprofiler")
    ('ssl', None)
    """
    return representation.split(":", 1)[1] if representation.startswith("embeddings:") else None


def check_representation(name: str, kind: str, representation: str, embedding: Any, *,
                         where: str, source: str | Path | None = None) -> EmbeddingConfig | None:
    """Check a model's ``representation`` and ``embedding`` before any work.

    Raises
    ------
    ConfigError
        An unknown representation, one given to a deep model (it learns its own), or
        ``embedding`` settings that are unknown, invalid, or whose weights are missing.

    Examples
    --------
    >>> check_representation("svm", "classical", "embeddings:foo", {}, where="models[0]")
    Traceback (most recent call last):
    ...
    cellcompare.config.ConfigError: models[0].representation must be one of ('cellprofiler', \
'embeddings:imagenet', 'embeddings:ssl'), found 'embeddings:foo'
    """
    prefix = f"{source}: " if source is not None else ""
    if representation == "embeddings:finetuned":
        raise ConfigError(f"{prefix}{where}.representation: embeddings of the fine-tuned network "
                          f"exist for each fold's test images only, so no classical head can be "
                          f"trained on them; use embeddings:ssl or embeddings:imagenet")
    if representation not in REPRESENTATIONS:
        raise ConfigError(f"{prefix}{where}.representation must be one of {REPRESENTATIONS}, "
                          f"found {representation!r}")
    if representation == CELLPROFILER:
        if embedding:
            raise ConfigError(f"{prefix}{where}.embedding is set but representation is cellprofiler")
        return None
    if kind != "classical":
        raise ConfigError(f"{prefix}{where}: {name} is a network and learns its own representation; "
                          f"representation: {representation} is for classical heads")
    settings = EmbeddingConfig.from_dict(embedding, where=f"{where}.embedding", source=source)
    if source_of(representation) == "imagenet":
        from cellcompare.deep.models import weights_for

        if settings.weights in ("none", "auto"):
            raise ConfigError(f"{prefix}{where}.embedding.weights: embeddings:imagenet needs real "
                              f"weights (imagenet or a path), not {settings.weights!r}")
        weights_for(settings.weights, "resnet18")  # missing file: fails now, naming its path
    else:
        settings.deep_config(0)  # ssl settings checked as the pretraining will read them
    return settings


def _with_cell_ids(cells: pd.DataFrame) -> pd.DataFrame:
    """``cells`` with its cell id column (``comparison.cellids``), which a cell task's rows key on."""
    cells[CELL_COLUMN] = cell_id(cells["Metadata_sample_id"], cells["Metadata_ObjectNumber"]).astype(str)
    return cells


class CellProfiler:
    """The extracted CellProfiler features (``task.image_table`` / ``task.cell_table``)."""

    name = CELLPROFILER

    def fit(self, train: Any) -> "CellProfiler":
        return self

    def table(self, data: Any, granularity: str) -> pd.DataFrame | None:
        return data.task.cell_table if granularity == "cell" else data.task.image_table

    def record(self) -> dict[str, Any]:
        return {"representation": CELLPROFILER}


@dataclass(frozen=True, eq=False)
class EmbeddingInputs:
    """What the run gives an :class:`Embeddings`: the images, crops and metadata it embeds.

    Attributes
    ----------
    metadata : pd.DataFrame
        ``features.embedding_tables.index_metadata`` of the dataset.
    crops : deep.crop_cache.CropCache or None
        ``input: cells``: the run's bounded crop cache.
    images : callable or None
        ``input: image``: ``images(sample_ids)`` -> the model inputs (the run's input cache).
    folder : Path
        ``{output}/embeddings``: cached tables (ImageNet).
    key : str
        The run's data digest with the input settings: names the cached tables.
    ssl : comparison.adapters.SSLInputs
        Where SSL backbones are cached (shared with ``weights: ssl`` networks of the same
        settings and fold), and each image's group.
    """

    metadata: pd.DataFrame
    crops: Any
    images: Callable[[Any], Any] | None
    folder: Path
    key: str
    ssl: Any = None

    def cell_inputs(self, image_ids: Any) -> Any:
        """``deep.cells.CellInputs`` of the crops of ``image_ids``, each with its image's group."""
        from cellcompare.deep.cells import CellInputs

        rows = self.crops.rows([str(s) for s in image_ids])
        images = self.crops.image_ids[rows]
        return CellInputs(self.crops.crops, rows, images, np.asarray([self.ssl.groups[i] for i in images]))


class Embeddings:
    """A network's embeddings as the feature table (``representation: embeddings:<source>``).

    Parameters
    ----------
    source : {"imagenet", "ssl"}
    settings : EmbeddingConfig
    inputs : EmbeddingInputs
    seed : int
        The run's seed (SSL pretraining).
    """

    def __init__(self, source: str, settings: EmbeddingConfig, inputs: EmbeddingInputs,
                 seed: int = 0) -> None:
        self.name = f"embeddings:{source}"
        self.source, self.settings, self.inputs, self.seed = source, settings, inputs, seed
        self.info: dict[str, Any] = {}
        self._tables: dict[str, tuple[pd.DataFrame | None, pd.DataFrame]] = {}

    @property
    def image_size(self) -> int:
        if self.settings.image_size is not None:
            return self.settings.image_size
        return int(self.inputs.crops.crop_size) if self.settings.input == "cells" else 224

    def _inputs(self, image_ids: Any, *, bounded: bool = False) -> tuple[Any, pd.DataFrame | None]:
        """The network's inputs of ``image_ids`` (crops normalised by ``embedding.normalize``
        over these images, as ``DeepClassifier.fit_cells`` does) and each crop's cell row;
        ``bounded``: at most ``cells_per_image`` crops per image drawn with the seed, the crops a
        ``weights: ssl`` network of the same settings pretrains on."""
        from cellcompare.deep.cells import per_image

        if self.settings.input != "cells":
            return self.inputs.images(np.asarray(image_ids, dtype=str)), None
        cells = self.inputs.cell_inputs(image_ids)
        view = cells.scaled(self.settings.normalize)
        rows = self.inputs.crops.cells.iloc[cells.rows].reset_index(drop=True)
        if bounded:
            keep = per_image(cells.images, self.settings.cells_per_image, self.seed)
            return view.subset(keep), rows.iloc[keep].reset_index(drop=True)
        return view, rows

    def fit(self, train: Any) -> "Embeddings":
        """Make the embedder: ImageNet's (once per run, tables cached) or an SSL backbone
        pretrained on ``train``'s images (and its test images when transductive)."""
        from cellcompare.deep.embed import ssl_embedder

        if self.source == "imagenet":
            self.embedder_ = None  # the cached whole-run tables are read in :meth:`table`
            return self
        from cellcompare.deep.ssl import pretrain

        config = self.settings.deep_config(self.seed).replace(image_size=self.image_size)
        if config.ssl.use_test_images:  # transductive: every image of the run, one backbone
            image_ids = list(self.inputs.ssl.image_ids)
            key = self.inputs.ssl.key(["transductive", *image_ids])
        else:
            image_ids = list(dict.fromkeys(train.task.images_of(train.sample_ids)))
            key = self.inputs.ssl.key(train.sample_ids)  # a weights: ssl network's key of this fold
        images, _ = self._inputs(image_ids, bounded=True)
        pretrained = pretrain(images, config, key=key, folder=self.inputs.ssl.folder)
        self.embedder_ = ssl_embedder(pretrained, image_size=self.image_size)
        return self

    def table(self, data: Any, granularity: str) -> pd.DataFrame:
        """The image or cell embedding table of ``data``'s images."""
        image_ids = list(dict.fromkeys(data.task.images_of(data.sample_ids)))
        if self.source == "imagenet":
            image, cells = self._whole_run()
        else:
            wanted = hashlib.sha256("\n".join(image_ids).encode()).hexdigest()
            if wanted not in self._tables:
                self._tables = {wanted: self._embed(image_ids)}  # this side of the fold only
            image, cells = self._tables[wanted]
        if granularity == "cell":
            if cells is None:
                raise ConfigError(f"{self.name} with embedding.input: image has no per-cell table")
            return cells
        return image

    def _embed(self, image_ids: list[str]) -> tuple[pd.DataFrame, pd.DataFrame | None]:
        from cellcompare.features.embedding_tables import embedding_tables

        images, cells = self._inputs(image_ids)
        values = self.embedder_.embed(images, batch_size=self.settings.batch_size)
        self.info = {"source": self.source, "dim": int(values.shape[1]), "image_size": self.image_size,
                     "input": self.settings.input, "weights": self.embedder_.info}
        image, table = embedding_tables(values, cells, self.inputs.metadata, self.source, image_ids)
        return image, None if table is None else _with_cell_ids(table)

    def _whole_run(self) -> tuple[pd.DataFrame, pd.DataFrame | None]:
        """ImageNet tables of every image, computed once and cached on disk."""
        from cellcompare import atomic
        from cellcompare.deep.embed import imagenet_embedder
        from cellcompare.features import load_table
        from cellcompare.features.embedding_tables import write_embedding_tables

        if "run" in self._tables:
            return self._tables["run"]
        digest = hashlib.sha256(json.dumps([self.inputs.key, self.settings.weights,
                                            self.settings.input, self.image_size]).encode()).hexdigest()[:16]
        folder = self.inputs.folder / f"imagenet-{digest}"
        stamp = folder / "embedding.json"
        ids = self.inputs.metadata["Metadata_sample_id"].astype(str).tolist()
        if stamp.is_file():
            log.info("reusing ImageNet embeddings in %s", folder)
            self.info = json.loads(stamp.read_text())
        else:
            images, _ = self._inputs(ids)
            self.embedder_ = imagenet_embedder(images, weights=self.settings.weights,
                                               image_size=self.image_size)
            image, cells = self._embed(ids)
            write_embedding_tables(folder, image, cells)
            atomic.write_json(stamp, self.info)  # last: marks the tables finished
        image = load_table(folder, "image")
        cells = load_table(folder, "cell") if self.settings.input == "cells" else None
        if cells is not None:
            cells = _with_cell_ids(cells)
        self._tables["run"] = (image, cells)
        return image, cells

    def embedder(self) -> Any:
        """The fitted ``deep.embed.Embedder`` (ImageNet's is rebuilt when its tables were cached:
        its statistics are those of every image of the run, as when the tables were made)."""
        from cellcompare.deep.embed import imagenet_embedder

        if getattr(self, "embedder_", None) is None:
            ids = self.inputs.metadata["Metadata_sample_id"].astype(str).tolist()
            self.embedder_ = imagenet_embedder(self._inputs(ids)[0], weights=self.settings.weights,
                                               image_size=self.image_size)
        return self.embedder_

    def serve_record(self, channels: Any) -> dict[str, Any]:
        """``serve.json`` ``embedding`` of an exported head: what serving embeds, as here.

        Raises
        ------
        ValueError
            ``embedding.normalize: group``: a served image's plate means are not stored with
            the head yet, so it could not be embedded as here.
        """
        if self.settings.normalize == "group":
            raise ValueError("serving a head on embeddings with embedding.normalize: group is not built "
                             "(the plate means are not stored); use normalize: image or none to export it")
        crops = self.inputs.crops
        return {"source": self.source, "input": self.settings.input,
                "cells_per_image": self.settings.cells_per_image, "seed": int(self.seed),
                "crop_size": None if crops is None else int(crops.crop_size),
                "crop_mask": bool(self.settings.crop_mask), "batch_size": int(self.settings.batch_size),
                "normalize": self.settings.normalize,
                "channel_index": None if channels is None else [int(c) for c in channels]}

    def record(self) -> dict[str, Any]:
        """``representation``, and the embedding's source, size, input and weights."""
        return {"representation": self.name, "embedding": dict(self.info)}



def finetuned_tables(adapter: Any, test: Any, metadata: pd.DataFrame,
                     fold: int) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """Embeddings of ``test``'s images by the network fine-tuned in this fold (``embed_models``).

    The fitted ``DeepModel``'s penultimate layer (``deep.embed.finetuned_embedder``) reads the
    inputs it predicted from: whole images, or its cells' crops normalised as in training. Each
    image is embedded only by the fold that held it out, so over the folds every image has one
    out-of-fold embedding; ``Metadata_fold`` says which.
    """
    from cellcompare.deep.embed import finetuned_embedder
    from cellcompare.features.embedding_tables import embedding_tables

    clf = adapter.classifier_
    embedder = finetuned_embedder(clf)
    image_ids = list(dict.fromkeys(test.task.images_of(test.sample_ids)))
    if adapter.granularity == "cell":
        cells, _ = adapter.cell_inputs(test)
        rows = adapter.crops.cells.iloc[cells.rows].reset_index(drop=True)
        values = embedder.embed(cells.scaled(clf.config.normalize), batch_size=clf.config.batch_size)
    else:
        rows, values = None, embedder.embed(adapter.images(test), batch_size=clf.config.batch_size)
    image, table = embedding_tables(values, rows, metadata, "finetuned", image_ids)
    for frame in (image, table):
        if frame is not None:
            frame.insert(1, "Metadata_fold", int(fold))
    return image, table


def write_finetuned(out: Path, label: str, parts: list[tuple[pd.DataFrame, pd.DataFrame | None]]) -> Path:
    """The fold parts of one network as ``{out}/embeddings/finetuned-<label>/`` shards."""
    from cellcompare.features.embedding_tables import write_embedding_tables

    folder = Path(out) / "embeddings" / f"finetuned-{label}"
    image = pd.concat([p[0] for p in parts], ignore_index=True)
    cells = [p[1] for p in parts if p[1] is not None]
    write_embedding_tables(folder, image, pd.concat(cells, ignore_index=True) if cells else None)
    return folder
