"""Writers of the results directory (docs/CONTRACTS.md): atomic files, metrics.json, summaries."""

from __future__ import annotations

import itertools
import logging
import os
import platform
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cellcompare import atomic
from cellcompare.comparison.metrics import LOWER_IS_BETTER, METRIC_NAMES
from cellcompare.comparison.stats import compare_models, mean_std
from cellcompare.provenance import package_versions

__all__ = ["write_parquet", "environment", "model_summary", "summary_frame",
           "comparisons", "PACKAGES"]

log = logging.getLogger(__name__)

PACKAGES = ["numpy", "scipy", "pandas", "scikit-learn", "scikit-image", "xgboost", "torch",
            "torchvision", "cp-measure", "pyarrow"]


def write_parquet(frame: pd.DataFrame, path: Path) -> Path:
    """Write Parquet atomically."""
    with atomic.atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)
    return Path(path)


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment() -> dict[str, Any]:
    """Python, package versions, CPU model and CUDA device name (None without a GPU)."""
    packages = package_versions(PACKAGES)
    gpu = None
    try:
        import torch
    except ImportError:  # third-party and optional here: a classical-only install has no torch
        log.info("torch is not installed; metrics.json records no GPU (environment.gpu: null)")
    else:
        if torch.cuda.is_available():
            gpu = torch.cuda.get_device_name(0)
    return {"python": sys.version.split()[0], "platform": platform.platform(), "packages": packages,
            "cpu": _cpu(), "cpu_count": os.cpu_count(), "gpu": gpu}


def model_summary(folds: list[dict]) -> dict[str, dict]:
    """Mean ± std over folds of every metric, fit/predict seconds and peak memory."""
    keys = METRIC_NAMES + ["fit_seconds", "predict_seconds", "peak_memory_mb"]
    return {k: mean_std([f[k] for f in folds if f.get(k) is not None]) for k in keys}


#: Largest / smallest class size above which balanced accuracy leads the tables.
IMBALANCE_RATIO = 3.0


def metric_order(class_counts: dict[str, int]) -> list[str]:
    """``METRIC_NAMES`` with ``balanced_accuracy`` first when class sizes differ > 3x.

    Plain accuracy rewards predicting the majority class; with imbalanced classes the report's
    tables lead with the metric that weighs every class equally.

    Examples
    --------
    >>> metric_order({"a": 95, "b": 5})[0], metric_order({"a": 10, "b": 12})[0]
    ('balanced_accuracy', 'accuracy')
    """
    sizes = [int(v) for v in class_counts.values() if int(v) > 0]
    if len(sizes) < 2 or max(sizes) <= IMBALANCE_RATIO * min(sizes):
        return list(METRIC_NAMES)
    return ["balanced_accuracy"] + [m for m in METRIC_NAMES if m != "balanced_accuracy"]


def summary_frame(models: dict[str, dict]) -> pd.DataFrame:
    """``summary.csv``: one row per model, ``{metric}_mean`` and ``{metric}_std``."""
    rows = []
    for name, info in models.items():
        row = {"model": name, "kind": info["kind"],
               "n_folds": sum(f["fold"] >= 0 for f in info["folds"])}
        for metric, ms in info["summary"].items():
            row[f"{metric}_mean"], row[f"{metric}_std"] = ms["mean"], ms["std"]
        rows.append(row)
    return pd.DataFrame(rows)


def comparisons(models: dict[str, dict], predictions: pd.DataFrame, classes: list[str]) -> list[dict]:
    """Every model pair on every metric: paired per-fold tests, McNemar on pooled predictions."""
    proba_cols = [f"proba_{c}" for c in classes]
    correct = {}
    for name, rows in predictions[predictions.fold >= 0].groupby("model"):
        rows = rows.sort_values(["fold", "sample_id"])
        pred = np.asarray(classes)[rows[proba_cols].to_numpy().argmax(axis=1)]
        correct[name] = pd.Series(pred == rows.true_label.to_numpy(),
                                  index=pd.MultiIndex.from_frame(rows[["fold", "sample_id"]]))
    out = []
    for a, b in itertools.combinations(models, 2):
        fa = {f["fold"]: f for f in models[a]["folds"] if f["fold"] >= 0}
        fb = {f["fold"]: f for f in models[b]["folds"] if f["fold"] >= 0}
        common = sorted(set(fa) & set(fb))
        ca, cb = correct.get(a), correct.get(b)
        if ca is not None and cb is not None:
            ca, cb = ca.align(cb, join="inner")
        else:
            ca = cb = pd.Series([], dtype=bool)
        for metric in METRIC_NAMES:
            sa = [fa[k][metric] for k in common]
            sb = [fb[k][metric] for k in common]
            out.append(compare_models(a, b, metric, sa, sb, ca.to_numpy(), cb.to_numpy(),
                                      lower_is_better=metric in LOWER_IS_BETTER))
    return out
