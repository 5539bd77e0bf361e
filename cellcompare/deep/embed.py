"""Embeddings: a network's penultimate layer as features (the learned representation).

An :class:`Embedder` is a network whose classification head is replaced by the identity, with
the input statistics and size it reads images at. Three sources make one:

* :func:`imagenet_embedder` — torchvision ResNet18 with ImageNet weights (the weights API file
  in the torch hub cache, or a checked path); nothing trained;
* :func:`finetuned_embedder` — a fitted ``DeepClassifier`` (the network fine-tuned in a fold);
* :func:`ssl_embedder` — a self-supervised backbone (``deep.ssl.pretrain``).

``Embedder.embed`` returns float32 ``(n, d)``: 512 for ResNet18, 256 for the small CNN.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .data import ImageTensorDataset, channel_stats
from .models import build_model, weights_for
from .train import _autocast, _to_device, make_loader, resolve_device

__all__ = ["EMBEDDING_SOURCES", "Embedder", "finetuned_embedder", "imagenet_embedder",
           "penultimate", "ssl_embedder"]

log = logging.getLogger(__name__)

#: Where an embedding comes from (``representation: embeddings:<source>``).
EMBEDDING_SOURCES = ("imagenet", "ssl", "finetuned")


def penultimate(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (ResNet18 or ``SmallCNN``: both end in ``fc``) whose head is the
    identity, in eval mode: its output is the pooled feature vector.

    Examples
    --------
    >>> from cellcompare.deep.models import SmallCNN
    >>> import torch
    >>> net = penultimate(SmallCNN(2, 3, width=4))
    >>> tuple(net(torch.zeros(1, 2, 16, 16)).shape)
    (1, 32)
    """
    net = copy.deepcopy(model)
    if not hasattr(net, "fc"):
        raise TypeError(f"{type(model).__name__} has no 'fc' head to remove")
    net.fc = nn.Identity()
    return net.eval()


@dataclass(frozen=True, eq=False)
class Embedder:
    """A headless network with how it reads images.

    Attributes
    ----------
    network : nn.Module
        Maps a normalised ``(N, C, S, S)`` batch to ``(N, d)``.
    mean, std : np.ndarray
        ``(C,)`` channel statistics the inputs are standardised with.
    image_size : int
        Side the inputs are resized to (``resize``: ``pad`` or ``crop``).
    info : dict
        Where the weights come from (``source``, ``path``/``key``, ``sha256``), for metrics.json.

    Examples
    --------
    >>> import numpy as np
    >>> from cellcompare.deep.models import SmallCNN
    >>> emb = Embedder(penultimate(SmallCNN(1, 2, width=4)), np.zeros(1), np.ones(1), 8,
    ...                info={"source": "none"})
    >>> out = emb.embed([np.full((1, 8, 8), v, np.float32) for v in (0.1, 0.9)], batch_size=2)
    >>> out.shape, out.dtype.name
    ((2, 32), 'float32')
    """

    network: nn.Module
    mean: np.ndarray
    std: np.ndarray
    image_size: int
    resize: str = "pad"
    info: dict = field(default_factory=dict)
    device: str = "auto"
    amp: bool = True
    arch: str = "resnet18"

    def save(self, folder: str | Path) -> Path:
        """Write ``network.pt`` (the headless state dict) and ``embedder.json`` (last)."""
        from cellcompare import atomic

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with atomic.atomic_path(folder / "network.pt") as tmp:
            torch.save({k: v.detach().cpu() for k, v in self.network.state_dict().items()}, tmp)
        atomic.write_json(folder / "embedder.json", {
            "arch": self.arch, "n_channels": len(self.mean), "mean": np.asarray(self.mean, float).tolist(),
            "std": np.asarray(self.std, float).tolist(), "image_size": int(self.image_size),
            "resize": self.resize, "amp": bool(self.amp), "info": self.info})
        return folder

    @classmethod
    def load(cls, folder: str | Path, device: str = "cpu") -> "Embedder":
        """The embedder :meth:`save` wrote (no weight file needed).

        Raises
        ------
        FileNotFoundError
            ``embedder.json`` is missing (an unfinished or foreign folder), naming it.
        """
        folder = Path(folder)
        meta_path = folder / "embedder.json"
        if not meta_path.is_file():
            raise FileNotFoundError(f"{meta_path} not found; expected a folder written by Embedder.save")
        meta = json.loads(meta_path.read_text())
        model, _ = build_model(meta["arch"], int(meta["n_channels"]), 2, "none")
        network = penultimate(model)
        network.load_state_dict(torch.load(folder / "network.pt", map_location="cpu", weights_only=True))
        return cls(network, np.asarray(meta["mean"], np.float32), np.asarray(meta["std"], np.float32),
                   int(meta["image_size"]), meta["resize"], meta["info"], device, bool(meta["amp"]),
                   meta["arch"])

    @property
    def dim(self) -> int:
        """Length of one embedding."""
        probe = torch.zeros(1, len(self.mean), self.image_size, self.image_size)
        with torch.no_grad():
            return int(self.network.to("cpu")(probe).shape[1])

    @torch.no_grad()
    def embed(self, images: Sequence, *, batch_size: int = 128, progress: bool = False) -> np.ndarray:
        """Float32 ``(len(images), d)`` embeddings of ``images`` (each ``(C, H, W)``)."""
        from cellcompare.progress import progress_bar

        device = resolve_device(self.device)
        network = self.network.to(device).eval()
        dataset = ImageTensorDataset(images, None, mean=self.mean, std=self.std,
                                     image_size=self.image_size, resize=self.resize)
        if len(dataset) == 0:
            return np.zeros((0, self.dim), np.float32)
        loader = make_loader(dataset, batch_size=batch_size, shuffle=False, device=device,
                             num_workers=0 if device.type == "cpu" else None, seed=0)
        out = []
        for batch, _ in progress_bar(loader, desc="embed", enabled=progress, leave=False):
            with _autocast(device, self.amp):
                out.append(network(_to_device(batch, device)).float().cpu())
        return torch.cat(out).numpy().astype(np.float32)


def imagenet_embedder(images: Sequence, *, weights: str = "imagenet", image_size: int = 224,
                      resize: str = "pad", device: str = "auto") -> Embedder:
    """ResNet18 with ImageNet (or given) weights and its first convolution adapted to the
    channels of ``images``, standardised with their channel statistics.

    The statistics are those of ``images`` (every image of a run: no label is read, and every
    fold then embeds with the same function). ``weights`` is ``imagenet`` or a checked path
    (``deep.models.weights_for``); ``none`` is refused, since random features are no
    pretrained representation.

    Raises
    ------
    ValueError
        ``weights: none``.
    deep.WeightsUnavailableError
        The ImageNet file is not in the torch hub cache (nothing is downloaded).
    """
    if weights in ("none", "auto"):
        raise ValueError(f"embeddings:imagenet needs real weights (imagenet or a path), not {weights!r}")
    spec = weights_for(weights, "resnet18")
    n_channels = np.asarray(images[0]).shape[0]
    model, info = build_model("resnet18", n_channels, 2, spec)
    mean, std = channel_stats(images, progress=False)
    log.info("embedding with resnet18 %s weights (%s)", info["source"], info.get("path"))
    return Embedder(penultimate(model), mean, std, int(image_size), resize, dict(info), device)  # resnet18


def finetuned_embedder(classifier: Any) -> Embedder:
    """The penultimate layer of a fitted ``deep.DeepClassifier`` with its own statistics."""
    cfg = classifier.config
    return Embedder(penultimate(classifier._check_fitted()), classifier.channel_mean_,
                    classifier.channel_std_, int(cfg.image_size), cfg.resize,
                    {"source": "finetuned", **dict(classifier.weights_info_ or {})}, cfg.device, cfg.amp,
                    cfg.arch)


def ssl_embedder(pretrained: Any, *, image_size: int, resize: str = "pad",
                 device: str = "auto") -> Embedder:
    """The backbone of a ``deep.ssl.Pretrained`` (self-supervised), with its statistics."""
    from .ssl import backbone

    return Embedder(penultimate(backbone(pretrained, 2)), np.asarray(pretrained.channel_mean),
                    np.asarray(pretrained.channel_std), int(image_size), resize,
                    {"source": "ssl", **{k: v for k, v in pretrained.info.items() if k != "loss"}}, device,
                    arch=pretrained.arch)
