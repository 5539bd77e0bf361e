"""Synthetic datasets written in the real layouts so the readers are exercised.

``make_cellpainting`` writes RxRx1-style Cell Painting sites with true nuclei and cell masks
(``make_rxrx1_like``: RxRx1's shape, four cell types, at any number of sites and classes);
``make_stages`` writes class folders of 16-bit embryo images in ordered stages.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from .cellpainting import (
    CELLPAINTING_SPREAD,
    RXRX1_CELL_TYPES,
    cellpainting_classes,
    make_cellpainting,
    make_rxrx1_like,
    read_truth,
)
from .cells import CellStyle
from .stages import STAGES_GROUP_PATTERN, StageStyle, make_stages, stage_styles

if TYPE_CHECKING:
    from cellcompare.datasets.config import SynthConfig

__all__ = [
    "make_synthetic",
    "CELLPAINTING_SPREAD",
    "RXRX1_CELL_TYPES",
    "STAGES_GROUP_PATTERN",
    "CellStyle",
    "StageStyle",
    "cellpainting_classes",
    "make_cellpainting",
    "make_rxrx1_like",
    "make_stages",
    "read_truth",
    "stage_styles",
]


def make_synthetic(out: str | Path, synth: "SynthConfig") -> Path:
    """Write the synthetic dataset a :class:`~cellcompare.datasets.SynthConfig` describes.

    ``cellpainting`` writes the RxRx1 layout (``size`` px square sites over ``plates``);
    ``stages`` writes class folders of ``size x size`` images.
    """
    if synth.kind == "cellpainting":
        return make_cellpainting(out, classes=synth.classes, per_class=synth.per_class,
                                 seed=synth.seed, size=synth.size, plates=synth.plates,
                                 controls_per_plate=synth.controls,
                                 mitotic_fraction=synth.mitotic_fraction)
    return make_stages(out, classes=synth.classes, per_class=synth.per_class, seed=synth.seed,
                       size=(synth.size, synth.size))
