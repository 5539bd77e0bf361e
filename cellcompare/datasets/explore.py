"""Look at the data first: counts, sizes, dtypes, a class bar plot and a channel montage."""

from __future__ import annotations

import json
import logging
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cellcompare.progress import progress_bar

from .base import ImageDataset

__all__ = ["image_table", "plot_class_counts", "plot_montage", "summarize", "write_summary"]

logger = logging.getLogger(__name__)


def image_table(dataset: ImageDataset) -> pd.DataFrame:
    """One row per sample with its size, dtype and channel count, read from the file headers.

    Returns
    -------
    pd.DataFrame
        Columns ``sample_id, label, group, height, width, channels, dtype``.
    """
    rows = []
    for i in progress_bar(range(len(dataset)), desc="reading headers", leave=False, enabled=len(dataset) >= 200):
        (channels, height, width), dtype = dataset.header(i)
        rows.append({"sample_id": dataset.index.sample_id.iat[i],
                     "label": dataset.index.label.iat[i], "group": dataset.index.group.iat[i],
                     "height": height, "width": width, "channels": channels, "dtype": str(dtype)})
    return pd.DataFrame(rows, columns=["sample_id", "label", "group", "height", "width",
                                       "channels", "dtype"])


def _counts(values: pd.Series) -> dict[str, int]:
    return {str(k): int(v) for k, v in sorted(Counter(values.dropna()).items(), key=lambda kv: str(kv[0]))}


def summarize(dataset: ImageDataset, table: pd.DataFrame | None = None) -> dict[str, Any]:
    """Counts and image properties of a dataset as a JSON-ready dict (headers only, no pixels).

    Parameters
    ----------
    dataset : ImageDataset
        An opened dataset.
    table : pd.DataFrame, optional
        Its :func:`image_table`, when already computed.

    Returns
    -------
    dict
        ``root, layout, n_images, channels, class_counts, group_counts, image_sizes`` (``"HxW"`` ->
        count), ``dtypes``, ``channel_counts``, ``skipped`` (list of ``{path, reason}``).
    """
    table = image_table(dataset) if table is None else table
    sizes = (table.height.astype(str) + "x" + table.width.astype(str)) if len(table) else pd.Series([], dtype=str)
    return {
        "root": str(dataset.root),
        "layout": dataset.layout,
        "n_images": int(len(dataset)),
        "channels": list(dataset.channel_names),
        "class_counts": _counts(table.label),
        "group_counts": _counts(table.group),
        "image_sizes": _counts(sizes),
        "dtypes": _counts(table.dtype),
        "channel_counts": _counts(table.channels.astype(str)),
        "skipped": [{"path": s.path, "reason": s.reason} for s in dataset.skipped],
    }


def plot_class_counts(summary: dict[str, Any], path: Path) -> Path:
    """Bar plot of images per class (colour-blind-safe palette)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    counts = summary["class_counts"] or {"(unlabelled)": summary["n_images"]}
    fig, ax = plt.subplots(figsize=(max(4, 0.5 * len(counts) + 2), 3.5))
    colour = sns.color_palette("colorblind")[0]
    ax.bar(list(counts), list(counts.values()), color=colour)
    ax.set_ylabel("images")
    ax.set_title(f"Images per class ({summary['n_images']} total)")
    ax.tick_params(axis="x", rotation=45)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _display(channel: np.ndarray) -> np.ndarray:
    low, high = np.percentile(channel, [1, 99.5])
    return np.clip((channel.astype(np.float32) - low) / max(high - low, 1e-6), 0, 1)


def plot_montage(dataset: ImageDataset, path: Path, *, max_classes: int = 12,
                 max_channels: int = 8) -> Path:
    """One example per class (rows) by channel (columns), each contrast-stretched."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = dataset.labels
    classes = list(dataset.classes)[:max_classes] or [None]
    firsts = [int(np.flatnonzero(labels == c)[0]) if c is not None else 0 for c in classes]
    names = list(dataset.channel_names)[:max_channels]
    fig, axes = plt.subplots(len(firsts), len(names), squeeze=False,
                             figsize=(1.8 * len(names) + 0.5, 1.8 * len(firsts) + 0.3))
    for row, (cls, i) in enumerate(zip(classes, firsts)):
        image = dataset[i].image if len(dataset) else None
        for col, name in enumerate(names):
            ax = axes[row, col]
            if image is not None:
                ax.imshow(_display(image[col]), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([]), ax.set_yticks([])
            if row == 0:
                ax.set_title(name, fontsize=9)
            if col == 0:
                ax.set_ylabel(str(cls), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def write_summary(dataset: ImageDataset, out: str | Path, *, plots: bool = True) -> Path:
    """Write ``images.csv``, ``counts.csv``, ``summary.json`` and the two plots to ``out``.

    Returns
    -------
    Path
        The ``summary.json`` written.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = image_table(dataset)
    summary = summarize(dataset, table)
    table.to_csv(out / "images.csv", index=False)
    counts = [{"kind": kind, "key": key, "count": n}
              for kind in ("class_counts", "group_counts", "image_sizes", "dtypes", "channel_counts")
              for key, n in summary[kind].items()]
    pd.DataFrame(counts, columns=["kind", "key", "count"]).to_csv(out / "counts.csv", index=False)
    path = out / "summary.json"
    path.write_text(json.dumps(summary, indent=2))
    if plots:
        plot_class_counts(summary, out / "class_counts.png")
        if len(dataset):
            plot_montage(dataset, out / "montage.png")
    logger.info("dataset summary written to %s", out)
    return path
