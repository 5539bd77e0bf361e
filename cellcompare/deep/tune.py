"""Small random search over the learning rate and batch size on the inner split only."""

from __future__ import annotations

import copy
import logging
import math
import time
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import Dataset

from cellcompare.progress import progress_bar

from .config import DeepConfig
from .errors import ConfigError
from .train import fit_model, seed_everything

logger = logging.getLogger(__name__)


def sample_params(config: DeepConfig, n: int, seed: int) -> list[dict[str, Any]]:
    """Draw ``n`` candidates: lr log-uniform in ``tune.lr_range``, batch size from ``tune.batch_sizes``."""
    lo, hi = config.tune.lr_range
    if not 0 < lo <= hi:
        raise ConfigError(f"tune.lr_range must satisfy 0 < low <= high, found {config.tune.lr_range}")
    rng = np.random.default_rng(seed)
    lrs = np.exp(rng.uniform(math.log(lo), math.log(hi), size=n))
    sizes = rng.choice(np.asarray(config.tune.batch_sizes), size=n)
    return [{"lr": float(lr), "batch_size": int(bs)} for lr, bs in zip(lrs, sizes)]


def random_search(initial_model: nn.Module, train_ds: Dataset, val_ds: Dataset | None,
                  config: DeepConfig, device: torch.device) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Train a copy of ``initial_model`` per candidate; keep the lowest inner-validation loss.

    Trials stop at ``tune.n_trials`` or once ``tune.time_budget_s`` has elapsed (a started trial
    always finishes; at least one trial runs).

    Returns
    -------
    best_params : dict
        ``{"lr": float, "batch_size": int}``.
    trials : list of dict
        Every trial's parameters, best validation loss and accuracy, and seconds.
    """
    if val_ds is None or len(val_ds) == 0:
        raise ConfigError("tuning needs an inner validation split; set val_fraction > 0 "
                          "(and enough images per class)")
    trials: list[dict[str, Any]] = []
    start = time.perf_counter()
    candidates = sample_params(config, config.tune.n_trials, config.seed)
    for params in progress_bar(candidates, desc="tuning", enabled=config.progress):
        if trials and time.perf_counter() - start > config.tune.time_budget_s:
            logger.info("tuning time budget %.0f s reached after %d trials", config.tune.time_budget_s, len(trials))
            break
        seed_everything(config.seed)
        model = copy.deepcopy(initial_model)
        batch_size = min(params["batch_size"], len(train_ds))
        trial_start = time.perf_counter()
        history = fit_model(model, train_ds, val_ds, config, lr=params["lr"], batch_size=batch_size,
                            epochs=config.tune.epochs, device=device)
        best = min(history, key=lambda r: _finite(r["val_loss"]))
        trials.append({**params, "val_loss": _finite(best["val_loss"]), "val_accuracy": best["val_accuracy"],
                       "seconds": time.perf_counter() - trial_start})
        logger.info("trial %d: %s", len(trials), trials[-1])
    best = min(trials, key=lambda t: (t["val_loss"], -t["val_accuracy"]))
    return {"lr": best["lr"], "batch_size": best["batch_size"]}, trials


def _finite(value: float) -> float:
    # a diverged trial (NaN loss) must rank last, not poison the comparison
    return value if math.isfinite(value) else math.inf
