"""Self-supervised pretraining on the dataset itself (``weights: ssl``): SimCLR.

"Pretrained" means nothing where ImageNet weights cannot be fetched (offline labs, this
machine). This module pretrains the backbone on the run's own images, without labels, then
``DeepClassifier`` fine-tunes it and ``deep.embed.ssl_embedder`` embeds with it.

Why SimCLR (NT-Xent, Chen et al. 2020) rather than DINO: it has few moving parts (one network,
one loss, no teacher momentum, centering or sharpening schedule to tune) and trains at the batch
sizes a CPU or a few hundred cell crops allow; DINO-style self-distillation (DINO4Cells,
Cell-DINO) is the choice at scale, with ViTs and many GPU hours. Each image gives two views:
a random resized crop (``ssl.crop_scale``: the side fraction kept, so the views share part of
the object but not its framing, the augmentation SimCLR depends on most) followed by the
model's own training augmentation (``deep.augment.build_augmentation``: 90-degree rotations,
flips, channel jitter: a cell has no orientation). The backbone (``deep.models.build_model``
without its head) feeds a 2-layer projection head; only the backbone is kept.

Pretraining is cached: ``pretrain(..., key=, folder=)`` writes ``folder/<digest>/backbone.pt``
and ``ssl.json`` (last), the digest covering the key (the data and images), the SSL settings,
the architecture, input size and channels, resize, augmentation and seed; a rerun loads it.
On CUDA it runs under bf16 autocast with channels_last inputs, as training does.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset
from torchvision.transforms import v2

from cellcompare import atomic
from cellcompare.progress import progress_bar

from .augment import build_augmentation
from .data import ImageTensorDataset, as_chw, channel_stats, one_thread
from .errors import ConfigError, WeightsChecksumError
from .models import build_model
from .train import _autocast, _to_device, make_loader, resolve_device, seed_everything, warmup_cosine

__all__ = ["Pretrained", "backbone", "nt_xent", "pretrain"]

log = logging.getLogger(__name__)
BACKBONE_FILE = "backbone.pt"
META_FILE = "ssl.json"


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's normalised temperature-scaled cross entropy of ``N`` pairs of projections.

    Each of the ``2N`` rows must pick its partner among the other ``2N - 1`` by cosine
    similarity / ``temperature``; the loss is the mean cross entropy.

    Examples
    --------
    Two pairs of orthogonal unit vectors: each row is similar only to its partner (cosine 1,
    the two others 0), so the loss is ``-log(e^(1/T) / (e^(1/T) + 2))``:

    >>> import math, torch
    >>> z = torch.eye(2)
    >>> round(float(nt_xent(z, z, 0.5)), 4), round(-math.log(math.e ** 2 / (math.e ** 2 + 2)), 4)
    (0.2395, 0.2395)
    """
    n = len(z1)
    z = nn.functional.normalize(torch.cat([z1, z2]).float(), dim=1)
    logits = z @ z.T / temperature
    logits.fill_diagonal_(float("-inf"))
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return nn.functional.cross_entropy(logits, target)


@dataclass(frozen=True, eq=False)
class Pretrained:
    """A self-supervised backbone.

    Attributes
    ----------
    arch : str
        ``resnet18`` or ``smallcnn``.
    n_channels : int
        Input channels.
    state_dict : dict
        The backbone's weights, named as ``deep.models.build_model``'s (everything but ``fc``).
    channel_mean, channel_std : np.ndarray
        ``(C,)`` statistics of the pretraining images, its inputs' standardisation.
    info : dict
        ``source`` ("ssl"), ``method`` ("simclr"), ``key``, ``images``, ``epochs``, ``seconds``
        (the training loop), ``images_per_s`` (pretraining images per second, each in two views),
        ``views_per_s`` (forward-backward passes per second, comparable to a training
        throughput), ``loss`` (per epoch), ``use_test_images``, ``sha256`` (of the saved state,
        the bytes of ``backbone.pt`` when cached) and, when cached, ``folder``.
    """

    arch: str
    n_channels: int
    state_dict: dict
    channel_mean: np.ndarray
    channel_std: np.ndarray
    info: dict = field(default_factory=dict)


def backbone(pre: Pretrained, n_classes: int) -> nn.Module:
    """``build_model(arch, n_channels, n_classes)`` with the pretrained backbone and a new head.

    Raises
    ------
    ConfigError
        The state holds other weights than the architecture's (only the head may be missing).
    """
    model, _ = build_model(pre.arch, pre.n_channels, max(2, int(n_classes)), "none")
    missing, unexpected = model.load_state_dict(pre.state_dict, strict=False)
    if unexpected or any(not k.startswith("fc.") for k in missing):
        raise ConfigError(f"SSL backbone does not fit {pre.arch}: missing {missing}, unexpected {unexpected}")
    return model


class _Views(Dataset):
    """Two augmented, standardised views of each image of ``base`` (resized, not standardised)."""

    def __init__(self, base: ImageTensorDataset, transform: Any, mean: np.ndarray, std: np.ndarray) -> None:
        self.base, self.transform = base, transform
        self.mean = torch.as_tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.as_tensor(std, dtype=torch.float32).view(-1, 1, 1)

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, item: int) -> tuple[torch.Tensor, torch.Tensor]:
        image, _ = self.base[item]
        with one_thread():  # per-image ops on one thread, as ImageTensorDataset's (deep.data.one_thread)
            return tuple((self.transform(image) - self.mean) / self.std for _ in range(2))


def _view_transform(config: Any) -> v2.Transform:
    steps: list[v2.Transform] = []
    if config.ssl.crop_scale < 1:
        scale = config.ssl.crop_scale ** 2  # torchvision's scale is an area fraction
        steps.append(v2.RandomResizedCrop(config.image_size, scale=(scale, 1.0), antialias=True))
    augment = build_augmentation(config.augment)
    if augment is not None:
        steps.append(augment)
    return v2.Compose(steps) if steps else v2.Identity()


def _digest(key: str, config: Any, n_channels: int) -> str:
    fields = {"key": key, "ssl": dataclasses.asdict(config.ssl), "arch": config.arch,
              "image_size": config.image_size, "resize": config.resize, "n_channels": n_channels,
              "augment": dataclasses.asdict(config.augment), "seed": config.seed,
              "batch_size": config.ssl.batch_size or config.batch_size, "format": 1}
    return hashlib.sha256(json.dumps(fields, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _load(folder: Path) -> Pretrained:
    meta = json.loads((folder / META_FILE).read_text())
    blob = (folder / BACKBONE_FILE).read_bytes()
    found, recorded = hashlib.sha256(blob).hexdigest(), meta["info"].get("sha256")
    if found != recorded:
        raise WeightsChecksumError(f"{folder / BACKBONE_FILE}: sha256 {found[:12]} differs from the "
                                   f"{recorded!s:.12} {META_FILE} recorded; delete {folder} to pretrain again")
    state = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    return Pretrained(meta["arch"], int(meta["n_channels"]), state,
                      np.asarray(meta["channel_mean"], np.float32), np.asarray(meta["channel_std"], np.float32),
                      meta["info"])


def _train(model: nn.Module, head: nn.Module, loader: Any, config: Any,
           device: torch.device) -> tuple[list[float], int, float]:
    """SimCLR epochs of ``model`` + ``head`` over ``loader``: loss per epoch, views seen, seconds."""
    ssl = config.ssl
    model.to(device), head.to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    params = list(model.parameters()) + list(head.parameters())
    optimizer = torch.optim.AdamW(params, lr=ssl.lr, weight_decay=1e-4)
    steps = len(loader) * ssl.epochs
    scheduler = warmup_cosine(optimizer, min(len(loader), steps // 2), steps)
    losses, seen, start = [], 0, time.perf_counter()
    model.train(), head.train()
    for epoch in progress_bar(range(ssl.epochs), desc="ssl", enabled=config.progress, leave=False):
        total, count = 0.0, 0
        for v1, v2_ in loader:
            v1, v2_ = _to_device(v1, device), _to_device(v2_, device)
            with _autocast(device, config.amp):
                loss = nt_xent(head(model(v1)), head(model(v2_)), ssl.temperature)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            total, count, seen = total + float(loss.detach()) * len(v1), count + len(v1), seen + 2 * len(v1)
        losses.append(total / max(count, 1))
        log.info("ssl epoch %d/%d: loss %.4f", epoch + 1, ssl.epochs, losses[-1])
    return losses, seen, time.perf_counter() - start


def pretrain(images: Sequence, config: Any, *, key: str | None = None, folder: str | Path | None = None,
             n_channels: int | None = None) -> Pretrained:
    """Pretrain ``config.arch`` on ``images`` with SimCLR (``config.ssl``), or load the cached run.

    Parameters
    ----------
    images : Sequence
        ``(C, H, W)`` float arrays, read on access (the images to learn from; no labels).
    config : deep.DeepConfig
        ``arch``, ``image_size``, ``resize``, ``augment``, ``seed``, ``device``, ``amp``,
        ``batch_size``, ``num_workers`` and ``ssl`` (:class:`deep.config.SSLConfig`).
    key : str, optional
        What the images are (e.g. a digest of the data and the fold's training ids); with
        ``folder`` the result is cached under a digest of it and the settings.
    folder : str or Path, optional
        Parent folder of the cached backbones (e.g. ``{output}/ssl``).
    n_channels : int, optional
        Input channels (default: the first image's).

    Examples
    --------
    >>> import numpy as np
    >>> from cellcompare.deep import DeepConfig
    >>> images = [np.random.default_rng(i).random((1, 16, 16), dtype=np.float32) for i in range(8)]
    >>> config = DeepConfig.from_dict({"arch": "smallcnn", "weights": "ssl", "image_size": 16,
    ...                                "device": "cpu", "progress": False, "batch_size": 8,
    ...                                "ssl": {"epochs": 2}})
    >>> pre = pretrain(images, config)
    >>> pre.info["images"], len(pre.info["loss"]), all(np.isfinite(pre.info["loss"]))
    (8, 2, True)
    """
    ssl = config.ssl
    if len(images) < 2:
        raise ConfigError(f"SSL pretraining needs at least 2 images, found {len(images)}")
    n_channels = int(n_channels or as_chw(images[0], 0).shape[0])
    target = None
    if folder is not None and key is not None:
        target = Path(folder) / _digest(key, config, n_channels)
        if (target / META_FILE).is_file():
            log.info("reusing the SSL backbone in %s (no pretraining)", target)
            return _load(target)
        log.info("pretraining the SSL backbone into %s", target)
    device = resolve_device(config.device)
    seed_everything(config.seed)
    model, _ = build_model(config.arch, n_channels, 2, "none")
    width = model.fc.in_features
    model.fc = nn.Identity()
    head = nn.Sequential(nn.Linear(width, width), nn.ReLU(inplace=True), nn.Linear(width, ssl.projection_dim))
    mean, std = channel_stats(images, progress=False)
    base = ImageTensorDataset(images, None, mean=np.zeros(n_channels), std=np.ones(n_channels),
                              image_size=config.image_size, resize=config.resize)
    batch = min(int(ssl.batch_size or config.batch_size), len(images))
    loader = make_loader(_Views(base, _view_transform(config), mean, std), batch_size=batch, shuffle=True,
                         device=device, num_workers=config.num_workers, seed=config.seed,
                         drop_last=len(images) % batch == 1)  # a lone last image has no negatives
    losses, seen, seconds = _train(model, head, loader, config, device)
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    buffer = io.BytesIO()
    torch.save(state, buffer)  # hashed and written as one: the record names the file's bytes
    blob = buffer.getvalue()
    info = {"source": "ssl", "method": "simclr", "key": key, "images": len(images), "epochs": ssl.epochs,
            "seconds": seconds, "images_per_s": seen / 2 / max(seconds, 1e-9),
            "views_per_s": seen / max(seconds, 1e-9), "loss": losses,
            "use_test_images": bool(ssl.use_test_images), "sha256": hashlib.sha256(blob).hexdigest()}
    if target is not None:
        target.mkdir(parents=True, exist_ok=True)
        atomic.write_bytes(target / BACKBONE_FILE, blob)
        info["folder"] = str(target)
        atomic.write_json(target / META_FILE, {"arch": config.arch, "n_channels": n_channels,
                                               "channel_mean": np.asarray(mean, float).tolist(),
                                               "channel_std": np.asarray(std, float).tolist(),
                                               "info": info})  # last: marks it finished
    log.info("SSL pretraining of %s on %d images: %d epochs in %.1f s (%.1f images/s, %.1f views/s), "
             "loss %.3f -> %.3f", config.arch, len(images), ssl.epochs, seconds, info["images_per_s"],
             info["views_per_s"], losses[0], losses[-1])
    return Pretrained(config.arch, n_channels, state, np.asarray(mean, np.float32),
                      np.asarray(std, np.float32), info)
