"""One readable training loop (after torchvision's references/classification/train.py).

CrossEntropyLoss with optional label smoothing, AdamW or SGD, linear warm-up then cosine decay
(per step), early stopping on the inner validation split, a checkpoint per epoch that a rerun
resumes from. On CUDA: bf16 autocast, channels_last, pinned memory, workers, optional
``torch.compile``; on CPU these paths are skipped.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from cellcompare.atomic import atomic_path
from cellcompare.progress import progress_bar

from .config import DeepConfig
from .errors import ConfigError, DeepError

logger = logging.getLogger(__name__)

CHECKPOINT_NAME = "last.pt"


def resolve_device(name: str) -> torch.device:
    """``"auto"`` → CUDA when available, else CPU; ``"cuda"`` without a GPU is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' requested but torch.cuda.is_available() is False; use device: auto or cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2 ** 32)
    torch.manual_seed(seed)


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: derive NumPy/Python seeds from the worker's torch seed."""
    seed = torch.initial_seed() % 2 ** 32
    np.random.seed(seed)
    random.seed(seed)


def make_loader(dataset: Dataset, *, batch_size: int, shuffle: bool, device: torch.device,
                num_workers: int | None, seed: int, drop_last: bool = False) -> DataLoader:
    """DataLoader with a seeded generator; workers and pinned memory only on CUDA by default."""
    if num_workers is None:
        num_workers = min(8, os.cpu_count() or 1) if device.type == "cuda" else 0
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last,
                      num_workers=num_workers, pin_memory=device.type == "cuda",
                      worker_init_fn=seed_worker, generator=generator,
                      persistent_workers=num_workers > 0, prefetch_factor=4 if num_workers > 0 else None)


def build_optimizer(model: nn.Module, config: DeepConfig, lr: float) -> torch.optim.Optimizer:
    """AdamW or SGD (Nesterov momentum); no weight decay on biases and norm parameters."""
    decay = [p for p in model.parameters() if p.ndim > 1]
    no_decay = [p for p in model.parameters() if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=config.momentum, nesterov=True)
    return torch.optim.AdamW(groups, lr=lr)


def warmup_cosine(optimizer: torch.optim.Optimizer, warmup_steps: int,
                  total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up from ~0 to the base learning rate, then cosine decay to 0 (per step)."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / (warmup_steps + 1)
        progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def _autocast(device: torch.device, amp: bool) -> torch.autocast:
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16,
                          enabled=amp and device.type == "cuda")


def _to_device(images: torch.Tensor, device: torch.device) -> torch.Tensor:
    if device.type == "cuda":
        return images.to(device, non_blocking=True, memory_format=torch.channels_last)
    return images.to(device)


def train_one_epoch(model: nn.Module, loader: DataLoader, criterion: nn.Module,
                    optimizer: torch.optim.Optimizer, scheduler: Any, device: torch.device, *,
                    amp: bool, epoch: int, progress: bool) -> dict[str, float]:
    """One pass over ``loader``; returns mean loss, accuracy, images/s, seconds and images seen."""
    model.train()
    total_loss = correct = seen = 0
    start = time.perf_counter()
    bar = progress_bar(loader, desc=f"epoch {epoch}", enabled=progress, leave=False)
    for images, labels in bar:
        images, labels = _to_device(images, device), labels.to(device, non_blocking=True)
        with _autocast(device, amp):
            logits = model(images)
            loss = criterion(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        n = labels.shape[0]
        total_loss += float(loss.detach()) * n
        correct += int((logits.argmax(1) == labels).sum())
        seen += n
        bar.set_postfix(loss=f"{total_loss / seen:.4f}", img_s=f"{seen / (time.perf_counter() - start):.1f}")
    elapsed = time.perf_counter() - start
    return {"train_loss": total_loss / max(seen, 1), "train_accuracy": correct / max(seen, 1),
            "images_per_s": seen / max(elapsed, 1e-9), "seconds": elapsed, "images": seen}


@torch.no_grad()
def predict_probabilities(model: nn.Module, loader: DataLoader, device: torch.device, *,
                          amp: bool, tta: str = "none", progress: bool = False) -> np.ndarray:
    """Softmax probabilities ``(n, n_classes)``, averaged over the TTA views of each batch."""
    from .augment import tta_views

    model.eval()
    out = []
    for images, _ in progress_bar(loader, desc="predict", enabled=progress, leave=False):
        images = _to_device(images, device)
        with _autocast(device, amp):
            probs = [torch.softmax(model(view).float(), dim=1) for view in tta_views(images, tta)]
        out.append(torch.stack(probs).mean(0).cpu())
    return torch.cat(out).numpy() if out else np.zeros((0, 0), dtype=np.float32)


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, loader: DataLoader, device: torch.device, *,
                          amp: bool, max_batches: int) -> int:
    """Re-estimate BatchNorm running statistics as a plain average over training batches.

    With few optimisation steps per epoch (small data sets, CPU runs), the exponential moving
    averages that BatchNorm keeps trail far behind the weights, so evaluation-mode outputs collapse
    onto one class while training-mode accuracy is high. Averaging the batch statistics of the
    current weights ("precise BN", Wu & Johnson 2021) removes that mismatch; the random number
    streams are restored so training itself is unchanged.

    Returns
    -------
    int
        Number of batches used (0 when the model has no BatchNorm layer).
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms or max_batches < 1:
        return 0
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: every batch counts equally
    was_training = model.training
    model.train()
    used = 0
    generator_state = loader.generator.get_state() if loader.generator is not None else None
    with torch.random.fork_rng(devices=[]):
        for images, _ in loader:
            with _autocast(device, amp):
                model(_to_device(images, device))
            used += 1
            if used >= max_batches:
                break
    if generator_state is not None:
        loader.generator.set_state(generator_state)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum
    model.train(was_training)
    return used


@torch.no_grad()
def evaluate(model: nn.Module, loader: DataLoader, criterion: nn.Module, device: torch.device, *,
             amp: bool) -> dict[str, float]:
    """Mean loss and accuracy on ``loader``."""
    model.eval()
    total_loss = correct = seen = 0
    for images, labels in loader:
        images, labels = _to_device(images, device), labels.to(device, non_blocking=True)
        with _autocast(device, amp):
            logits = model(images)
        total_loss += float(criterion(logits.float(), labels)) * labels.shape[0]
        correct += int((logits.argmax(1) == labels).sum())
        seen += labels.shape[0]
    return {"val_loss": total_loss / max(seen, 1), "val_accuracy": correct / max(seen, 1)}


def format_epoch(record: Mapping[str, float], epochs: int) -> str:
    """One epoch's history record as a line a person reads in a log.

    Parameters
    ----------
    record : mapping
        A record of :func:`fit_model`'s history: ``epoch``, ``lr``, ``train_loss``,
        ``train_accuracy``, ``images_per_s`` and, with a validation set, ``val_loss`` and
        ``val_accuracy`` (left out of the line when absent).
    epochs : int
        Planned number of epochs, shown as ``epoch n/epochs``.

    Returns
    -------
    str
        Example: ``epoch  3/15  lr 3.0e-03  loss 1.372  acc 0.50  val_loss 2.061  val_acc 0.20  41 img/s``.
    """
    # the epoch number is padded to the width of the total so that columns line up across epochs
    fields = [f"epoch {record['epoch']:>{len(str(epochs))}}/{epochs}", f"lr {record['lr']:.1e}",
              f"loss {record['train_loss']:.3f}", f"acc {record['train_accuracy']:.2f}"]
    if "val_loss" in record:
        fields += [f"val_loss {record['val_loss']:.3f}", f"val_acc {record['val_accuracy']:.2f}"]
    speed = record["images_per_s"]
    fields.append(f"{speed:.0f} img/s" if speed >= 10 else f"{speed:.1f} img/s")
    return "  ".join(fields)


@dataclass
class _RunState:
    epoch: int = 0
    best_loss: float = math.inf
    bad_epochs: int = 0
    best_state: dict[str, torch.Tensor] | None = None
    history: list[dict[str, float]] = field(default_factory=list)

    def track(self, monitored: float, model: nn.Module) -> None:
        """Keep a copy of the weights when ``monitored`` improves, else count a bad epoch."""
        if monitored < self.best_loss:
            self.best_loss, self.bad_epochs = monitored, 0
            self.best_state = copy.deepcopy({k: v.detach().cpu() for k, v in model.state_dict().items()})
        else:
            self.bad_epochs += 1


def _save_checkpoint(path: Path, model: nn.Module, optimizer: Any, scheduler: Any, state: _RunState,
                     fingerprint: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save({"fingerprint": fingerprint, "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "epoch": state.epoch, "best_loss": state.best_loss, "bad_epochs": state.bad_epochs,
                    "best_state": state.best_state, "history": state.history,
                    "torch_rng": torch.get_rng_state()}, tmp)


def _load_checkpoint(path: Path, model: nn.Module, optimizer: Any, scheduler: Any,
                     fingerprint: dict[str, Any]) -> _RunState:
    saved = torch.load(path, map_location="cpu", weights_only=False)
    if saved["fingerprint"] != fingerprint:
        raise DeepError(f"checkpoint {path} was written by a different run: found {saved['fingerprint']}, "
                        f"expected {fingerprint}; delete it or choose another checkpoint_dir")
    model.load_state_dict(saved["model"])
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    torch.set_rng_state(saved["torch_rng"])
    logger.info("resumed from %s after epoch %d", path, saved["epoch"])
    return _RunState(saved["epoch"], saved["best_loss"], saved["bad_epochs"], saved["best_state"], saved["history"])


def _open_checkpoint(checkpoint_dir: str | Path | None, model: nn.Module, optimizer: Any, scheduler: Any,
                     fingerprint: dict[str, Any]) -> tuple[Path | None, _RunState]:
    if checkpoint_dir is None:
        return None, _RunState()
    ckpt = Path(checkpoint_dir) / CHECKPOINT_NAME
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    if ckpt.is_file():
        return ckpt, _load_checkpoint(ckpt, model, optimizer, scheduler, fingerprint)
    return ckpt, _RunState()


def fit_model(model: nn.Module, train_ds: Dataset, val_ds: Dataset | None, config: DeepConfig, *,
              lr: float, batch_size: int, epochs: int, device: torch.device,
              checkpoint_dir: str | Path | None = None,
              class_weight: np.ndarray | None = None) -> list[dict[str, float]]:
    """Train ``model`` in place; on return it holds the best weights (lowest validation loss).

    ``class_weight`` (one positive weight per class index) weights the cross-entropy loss.

    Without a validation set the last epoch's weights are kept and there is no early stopping.

    Returns
    -------
    list of dict
        One record per epoch: epoch, lr, train_loss, train_accuracy, images_per_s, seconds
        (training pass only), images and, with a
        validation set, val_loss and val_accuracy.
    """
    model.to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    step_model = torch.compile(model) if config.compile and device.type == "cuda" else model
    train_loader = make_loader(train_ds, batch_size=batch_size, shuffle=True, device=device,
                               num_workers=config.num_workers, seed=config.seed,
                               drop_last=len(train_ds) > batch_size)
    val_loader = None if val_ds is None else make_loader(
        val_ds, batch_size=batch_size, shuffle=False, device=device, num_workers=config.num_workers, seed=0)
    weight = None if class_weight is None else torch.as_tensor(class_weight, dtype=torch.float32, device=device)
    criterion = nn.CrossEntropyLoss(weight=weight, label_smoothing=config.label_smoothing)
    optimizer = build_optimizer(model, config, lr)
    steps = len(train_loader)
    scheduler = warmup_cosine(optimizer, int(round(config.warmup_epochs * steps)), epochs * steps)
    fingerprint = {"lr": lr, "batch_size": batch_size, "epochs": epochs, "n_train": len(train_ds),
                   "seed": config.seed, "arch": config.arch}
    ckpt, state = _open_checkpoint(checkpoint_dir, model, optimizer, scheduler, fingerprint)
    stopped = val_loader is not None and state.bad_epochs >= config.patience
    bar = progress_bar(range(epochs if stopped else state.epoch, epochs), desc="training",
                       enabled=config.progress)
    for epoch in bar:
        # the shuffle order depends only on (seed, epoch), so a resumed run sees the same batches
        train_loader.generator.manual_seed(config.seed * 100_003 + epoch)
        record = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"]}
        record.update(train_one_epoch(step_model, train_loader, criterion, optimizer, scheduler, device,
                                      amp=config.amp, epoch=epoch + 1, progress=config.progress))
        if config.precise_bn:
            recalibrate_batchnorm(model, train_loader, device, amp=config.amp,
                                  max_batches=config.precise_bn_batches)
        if val_loader is not None:
            record.update(evaluate(step_model, val_loader, criterion, device, amp=config.amp))
        state.epoch = epoch + 1
        state.history.append(record)
        state.track(record.get("val_loss", -float(epoch)), model)
        bar.set_postfix(loss=f"{record['train_loss']:.4f}", img_s=f"{record['images_per_s']:.1f}")
        logger.info("%s", format_epoch(record, epochs))
        if ckpt is not None:
            _save_checkpoint(ckpt, model, optimizer, scheduler, state, fingerprint)
        if val_loader is not None and state.bad_epochs >= config.patience:
            logger.info("early stopping after epoch %d (no improvement for %d epochs)", epoch + 1, state.bad_epochs)
            break
    if state.best_state is not None:
        model.load_state_dict(state.best_state)
    return state.history
