"""Synthetic datasets written in the real layouts so the readers are exercised.

``make_cellpainting`` writes RxRx1-style Cell Painting sites with true nuclei and cell masks;
``make_stages`` writes class folders of 16-bit embryo images in ordered stages.
"""

from .cellpainting import CELLPAINTING_SPREAD, cellpainting_classes, make_cellpainting, read_truth
from .cells import CellStyle
from .stages import STAGES_GROUP_PATTERN, StageStyle, make_stages, stage_styles

__all__ = [
    "CELLPAINTING_SPREAD",
    "STAGES_GROUP_PATTERN",
    "CellStyle",
    "StageStyle",
    "cellpainting_classes",
    "make_cellpainting",
    "make_stages",
    "read_truth",
    "stage_styles",
]
