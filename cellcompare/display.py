"""Cell crops as pictures: RGB views and contact sheets, for the report and ``cellcompare fetch``."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

__all__ = ["contact_sheet", "crop_rgb"]


def crop_rgb(crop: np.ndarray) -> np.ndarray:
    """A ``(C, S, S)`` crop as RGB: its first three channels, each scaled to its 99.5th percentile.

    Examples
    --------
    >>> crop_rgb(np.ones((2, 4, 4))).shape
    (4, 4, 3)
    """
    crop = np.asarray(crop, dtype=np.float32)
    channels = [crop[min(i, len(crop) - 1)] for i in range(3)] if len(crop) >= 3 else [crop[0]] * 3
    out = []
    for ch in channels:
        top = float(np.percentile(ch, 99.5))
        out.append(ch / top if top > 0 else ch)
    return np.clip(np.stack(out[::-1], axis=-1), 0, 1)  # first channel (DNA) shown in blue


def contact_sheet(crops: np.ndarray, captions: Sequence[str], path: str | Path, *,
                  columns: int = 10, title: str = "") -> Path:
    """Write crops ``(N, C, S, S)`` as one PNG grid, each tile captioned (``captions[i]``).

    Returns
    -------
    Path
        ``path``, written atomically.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cellcompare.atomic import atomic_path

    n = len(crops)
    columns = max(1, min(columns, n))
    rows = max(1, -(-n // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(1.2 * columns, 1.35 * rows + 0.3), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(crop_rgb(crops[i]), interpolation="nearest")
            ax.set_title(captions[i], fontsize=5)
    if title:
        fig.suptitle(title, fontsize=8)
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, format="png", dpi=130, bbox_inches="tight")
    plt.close(fig)
    return Path(path)
