"""A classical head's ``embedding:`` settings: the network, input and crops an embedding reads.

Torch-free (configuration is read before any model is built); ``comparison.representation`` and
``deep.embed_job`` use it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cellcompare.config import ConfigError, build

__all__ = ["INPUTS", "EmbeddingConfig"]

#: What is embedded: cell crops or whole images.
INPUTS = ("cells", "image")


@dataclass(frozen=True)
class EmbeddingConfig:
    """A classical head's ``embedding:`` settings (with ``representation: embeddings:<source>``).

    Attributes
    ----------
    input : {"cells", "image"}
        Embed cell crops (an image's row is its cells' mean) or whole images.
    weights : str
        ``embeddings:imagenet``: ``imagenet`` (torchvision's file in the torch hub cache) or a
        path ``resnet18-<sha256 prefix>.pth``.
    arch : str
        ``embeddings:ssl``: the backbone pretrained (``resnet18`` or ``smallcnn``).
    image_size : int or None
        Side the inputs are resized to; ``None``: the crop size (cells) or 224 (images).
    cells_per_image, crop_size, crop_mask
        The crop cache read (``input: cells``): at most this many cells per image, drawn with
        the run's seed; ``crop_size`` ``None`` = 3.5 x the median nucleus diameter.
    batch_size : int
        Images per forward pass (and the SSL batch unless ``ssl.batch_size`` is set).
    normalize : {"none", "group", "image"}
        Crops divided by their plate's or image's channel means first (``DeepConfig.normalize``).
    augment : dict
        ``embeddings:ssl``: ``deep.config.AugmentConfig`` fields of the pretraining views.
    ssl : dict
        ``embeddings:ssl``: ``deep.config.SSLConfig`` fields (epochs, temperature, ...).

    An ``embeddings:ssl`` head whose settings match a ``weights: ssl`` network of the same run
    (arch, image size, cells per image, normalize, augment, ssl) shares that network's backbone
    of each fold (one pretraining, ``deep.ssl``'s cache).
    """

    input: str = "cells"
    weights: str = "imagenet"
    arch: str = "resnet18"
    image_size: int | None = None
    cells_per_image: int | None = 16
    crop_size: int | None = None
    crop_mask: bool = False
    batch_size: int = 128
    normalize: str = "none"
    augment: dict = field(default_factory=dict)
    ssl: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.input not in INPUTS:
            raise ConfigError(f"embedding.input must be one of {INPUTS}, found {self.input!r}")
        for key in ("image_size", "cells_per_image", "crop_size"):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"embedding.{key} must be a positive integer or null, found {value!r}")
        if self.batch_size < 1:
            raise ConfigError(f"embedding.batch_size must be >= 1, found {self.batch_size}")

    @classmethod
    def from_dict(cls, data: Any, *, where: str = "embedding",
                  source: str | Path | None = None) -> "EmbeddingConfig":
        """Build from a mapping (unknown keys are errors naming ``where`` and ``source``)."""
        return build(cls, dict(data or {}), where=where, source=source)

    def deep_config(self, seed: int) -> Any:
        """The ``deep.DeepConfig`` an SSL backbone is pretrained with (its ``ssl`` section)."""
        from .config import DeepConfig

        fields = {"arch": self.arch, "weights": "ssl", "seed": seed, "progress": False,
                  "batch_size": self.batch_size, "normalize": self.normalize,
                  "augment": dict(self.augment), "ssl": dict(self.ssl)}
        if self.image_size is not None:
            fields["image_size"] = self.image_size
        return DeepConfig.from_dict(fields)
