"""Image figures: a montage of sample images per class and segmentation outline overlays.

Pixels are read through ``datasets.open_dataset`` (the dataset root recorded in
``metrics.json``); label images come from ``features/qc/{sample_id}.npz``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np
import pandas as pd
import seaborn as sns  # noqa: E402
from skimage.segmentation import find_boundaries
from skimage.transform import resize

from cellcompare.reports.figures import ReportFigure
from cellcompare.reports.theme import PALETTE, figure_to_data_uri

__all__ = ["channel_limits", "composite", "open_images", "montage_figure", "overlay_figure"]

log = logging.getLogger(__name__)

# channel k of a composite goes to RGB colour k: blue, green, red, then mixtures
CHANNEL_COLORS = np.array([[0, 0.45, 1], [0, 1, 0], [1, 0, 0], [1, 0, 1], [0, 1, 1], [1, 1, 0]])
THUMB = 160


def channel_limits(images: np.ndarray) -> np.ndarray:
    """Per-channel 1 and 99.5 percentiles over a stack ``(N, C, H, W)``: ``(C, 2)``.

    Pass them to :func:`composite` so that several images share one contrast and their
    intensities stay comparable.
    """
    stack = np.asarray(images, dtype=np.float32)
    return np.stack([np.percentile(stack[:, k], [1, 99.5]) for k in range(stack.shape[1])])


def composite(image: np.ndarray, *, size: int = THUMB, limits: np.ndarray | None = None) -> np.ndarray:
    """Colour composite of a ``(C, H, W)`` image, each channel stretched to its 1–99.5 %ile.

    Parameters
    ----------
    image : np.ndarray
        ``(C, H, W)`` image of any dtype; a 2-D image counts as one channel.
    size : int
        Longest side of the returned thumbnail in pixels.
    limits : np.ndarray, optional
        ``(C, 2)`` low and high value per channel (:func:`channel_limits`) instead of the
        image's own percentiles.

    Returns
    -------
    np.ndarray
        float ``(h, w, 3)`` RGB image in [0, 1]; one channel is shown in grey.
    """
    image = np.asarray(image, dtype=np.float32)
    if image.ndim == 2:
        image = image[None]
    scale = min(1.0, size / max(image.shape[1:]))
    shape = (max(1, round(image.shape[1] * scale)), max(1, round(image.shape[2] * scale)))
    rgb = np.zeros((*shape, 3), dtype=np.float32)
    for k, channel in enumerate(image[: len(CHANNEL_COLORS)]):
        lo, hi = np.percentile(channel, [1, 99.5]) if limits is None else limits[k]
        stretched = np.clip((channel - lo) / (hi - lo), 0, 1) if hi > lo else np.zeros_like(channel)
        small = resize(stretched, shape, anti_aliasing=scale < 1, preserve_range=True)
        color = np.ones(3) if image.shape[0] == 1 else CHANNEL_COLORS[k]
        rgb += small[..., None] * color
    return np.clip(rgb, 0, 1)


def open_images(root: str | None) -> tuple[Any | None, str | None]:
    """Open the dataset the results were computed on; return ``(dataset, problem)``."""
    if not root:
        return None, "metrics.json records no dataset root, so no images can be shown."
    if not Path(root).exists():
        return None, (f"The dataset folder {root} is not reachable from here, "
                      "so no images are shown.")
    try:
        from cellcompare.datasets import open_dataset

        return open_dataset(root), None
    except Exception as exc:  # any reader failure must not stop the rest of the report
        log.warning("could not open dataset %s: %s", root, exc)
        return None, f"The dataset at {root} could not be opened ({type(exc).__name__}: {exc})."


#: Column of a montage for images without a label.
UNLABELLED = "(unlabelled)"


def montage_figure(dataset: Any, classes: Sequence[str] | None = None, *, per_class: int = 3,
                   max_classes: int = 8) -> ReportFigure:
    """Grid of sample composites: one column per class (at most ``max_classes`` columns).

    ``classes`` are labels of the dataset's images (the run's classes for an image task);
    ``None`` shows the dataset's own labels (a cell task's classes label cells, not images),
    images without one under :data:`UNLABELLED`.

    Raises
    ------
    ValueError
        No image of the dataset carries one of ``classes``.
    """
    raw = pd.Series(np.asarray(dataset.labels, dtype=object))
    labels = raw.where(raw.notna(), UNLABELLED).astype(str).to_numpy()
    classes = sorted(set(labels)) if classes is None else list(classes)
    shown = [c for c in classes if np.any(labels == c)][:max_classes]
    if not shown:
        raise ValueError(f"no image of the dataset at {getattr(dataset, 'root', '?')} is labelled "
                         f"with one of the classes {classes[:5]}")
    # one column per class, so that eight classes still fit the page width
    fig, axes = plt.subplots(per_class, len(shown), squeeze=False,
                             figsize=(1.6 * max(len(shown), 3), 1.7 * per_class))
    for col, cls in enumerate(shown):
        indices = np.flatnonzero(labels == cls)[:per_class]
        for row in range(per_class):
            ax = axes[row, col]
            ax.set_axis_off()
            if row < len(indices):
                ax.imshow(composite(dataset[int(indices[row])].image))
            if row == 0:
                ax.set_title(cls, fontsize=9)
    fig.tight_layout()
    channels = list(getattr(dataset, "channel_names", ()))
    colors = ["blue", "green", "red", "magenta", "cyan", "yellow"]
    legend = (f"{channels[0]} in grey" if len(channels) == 1 else
              ", ".join(f"{c} = {colors[k]}" for k, c in enumerate(channels[:6])))
    extra = f" Not shown: {', '.join(channels[6:])}." if len(channels) > 6 else ""
    more = f" (first {len(shown)} of {len(classes)} classes)" if len(classes) > len(shown) else ""
    caption = (f"Sample images, one column per class{more}, each channel contrast-stretched. "
               f"Channels: {legend or 'grey'}.{extra} Look for visible differences between "
               "columns, and for artefacts (blur, saturation, debris) that a model could "
               "learn instead of biology.")
    return ReportFigure("Sample images", figure_to_data_uri(fig), caption)


def overlay_figure(qc_files: Sequence[Path], dataset: Any | None, *, n: int = 4) -> ReportFigure:
    """Nucleus and cell outlines from ``features/qc/*.npz`` drawn over the DNA channel."""
    palette = sns.color_palette(PALETTE)
    nucleus_color, cell_color = np.array(palette[1]), np.array(palette[9 % len(palette)])
    files = list(qc_files)[:n]
    fig, axes = plt.subplots(1, len(files), figsize=(3.2 * len(files), 3.4), squeeze=False)
    missing_pixels = False
    for ax, path in zip(axes[0], files):
        sample_id = path.stem
        with np.load(path) as data:
            nuclei, cells = data["nuclei"], data["cells"]
        background = _dna_channel(dataset, sample_id, nuclei.shape)
        missing_pixels |= background is None
        rgb = np.repeat((background if background is not None else
                         np.zeros(nuclei.shape, np.float32))[..., None], 3, axis=2)
        rgb[find_boundaries(cells, mode="thick")] = cell_color
        rgb[find_boundaries(nuclei, mode="thick")] = nucleus_color
        ax.imshow(rgb)
        ax.set_title(f"{sample_id}\n{len(np.unique(cells[cells > 0]))} cells", fontsize=9)
        ax.set_axis_off()
    fig.tight_layout()
    note = " (image pixels unavailable: outlines on black)" if missing_pixels else ""
    caption = ("Segmentation outlines: nuclei in orange, cell boundaries in sky blue, over the "
               f"first (DNA) channel{note}. Look for merged neighbours, nuclei split in two, and "
               "cell outlines that leak into background: those errors feed every feature.")
    return ReportFigure("Segmentation QC", figure_to_data_uri(fig), caption)


def _dna_channel(dataset: Any | None, sample_id: str, shape: tuple[int, ...]) -> np.ndarray | None:
    if dataset is None:
        return None
    try:
        image = np.asarray(dataset.get(sample_id).float_image)[0]
    except Exception as exc:  # a missing sample must not hide the outlines
        log.warning("no pixels for qc sample %s: %s", sample_id, exc)
        return None
    if image.shape != tuple(shape):
        log.warning("qc sample %s: image %s vs labels %s", sample_id, image.shape, shape)
        return None
    lo, hi = np.percentile(image, [1, 99.5])
    return np.clip((image - lo) / (hi - lo), 0, 1) if hi > lo else np.zeros_like(image)
