"""One plotting theme for every report figure, and PNG data-URI encoding.

All figures use seaborn's colour-blind-safe ``colorblind`` palette, so a model has the same
colour in every plot of the report.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import seaborn as sns  # noqa: E402
from PIL import Image  # noqa: E402

__all__ = ["PALETTE", "HEATMAP_CMAP", "apply_theme", "model_colors", "figure_to_data_uri",
           "array_to_data_uri"]

PALETTE = "colorblind"
HEATMAP_CMAP = "viridis"  # perceptually uniform and colour-blind safe
DPI = 110


def apply_theme() -> None:
    """Set the seaborn theme shared by all report figures."""
    sns.set_theme(context="notebook", style="whitegrid", palette=PALETTE,
                  rc={"figure.dpi": DPI, "savefig.dpi": DPI, "axes.titlesize": 12,
                      "axes.titleweight": "bold", "font.family": "DejaVu Sans"})


def model_colors(models: Sequence[str]) -> dict[str, tuple[float, float, float]]:
    """Map each model to a fixed colour of the colour-blind palette.

    Parameters
    ----------
    models : sequence of str
        Model names in report order.

    Returns
    -------
    dict
        ``{model: rgb}``; the palette cycles when there are more models than colours.
    """
    colors = sns.color_palette(PALETTE, n_colors=max(len(models), 1))
    return {m: colors[i % len(colors)] for i, m in enumerate(models)}


def figure_to_data_uri(fig: plt.Figure) -> str:
    """Encode a matplotlib figure as a ``data:image/png;base64,`` URI and close it."""
    buf = io.BytesIO()
    try:
        fig.savefig(buf, format="png", bbox_inches="tight", facecolor="white")
    finally:
        plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def array_to_data_uri(rgb: np.ndarray) -> str:
    """Encode an ``(H, W, 3)`` float image in [0, 1] or uint8 as a PNG data URI."""
    if rgb.dtype != np.uint8:
        rgb = (np.clip(rgb, 0.0, 1.0) * 255).round().astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG", optimize=True)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
