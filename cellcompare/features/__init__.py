"""Segmentation and CellProfiler-parity per-cell features (via cp_measure), as a batch job.

>>> from features import FeatureConfig, extract_sample, run_extraction, load_table
"""

from .batch import (
    DatasetOptionsMismatchError,
    FeatureConfigMismatchError,
    load_table,
    run_extraction,
)
from .config import FAMILIES, PRESETS, FeatureConfig, FeatureConfigError
from .extract import ChannelConfigError, aggregate, extract_sample, segment_sample
from .resume import DatasetChangedError
from .segmentation import (
    SegmentationError,
    cytoplasm,
    segment_cells,
    segment_nuclei,
    segment_whole_object,
)

__all__ = [
    "DatasetChangedError",
    "DatasetOptionsMismatchError",
    "FeatureConfigMismatchError",
    "FAMILIES", "PRESETS", "ChannelConfigError", "FeatureConfig", "FeatureConfigError",
    "SegmentationError", "aggregate", "cytoplasm", "extract_sample", "load_table",
    "run_extraction", "segment_cells", "segment_nuclei", "segment_sample", "segment_whole_object",
]
