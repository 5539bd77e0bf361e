"""Data layer: lazy readers of microscopy datasets, synthetic data, exploration.

>>> from datasets import open_dataset
>>> ds = open_dataset("path/to/data")          # doctest: +SKIP
>>> sample = ds[0]; sample.image.shape         # doctest: +SKIP
(6, 512, 512)
"""

from .base import ImageDataset
from .channelsets import ChannelSetDataset
from .config import DatasetConfig, SynthConfig
from .errors import (
    ChannelShapeError,
    DatasetError,
    EmptyClassError,
    ImageTooLargeError,
    LayoutError,
    MetadataMismatchError,
    MissingChannelError,
    SkipRecord,
    UnreadableImageError,
)
from .folders import ClassFolderDataset
from .imageio import probe_image, read_image
from .loader import LAYOUTS, detect_layout, open_dataset
from .rxrx1 import RXRX1_CHANNELS, RxRx1Dataset
from .sample import Sample, to_float

__all__ = [
    "RXRX1_CHANNELS",
    "ChannelSetDataset",
    "ChannelShapeError",
    "ClassFolderDataset",
    "DatasetConfig",
    "LAYOUTS",
    "SynthConfig",
    "DatasetError",
    "EmptyClassError",
    "ImageDataset",
    "LayoutError",
    "MetadataMismatchError",
    "MissingChannelError",
    "RxRx1Dataset",
    "Sample",
    "SkipRecord",
    "ImageTooLargeError",
    "UnreadableImageError",
    "detect_layout",
    "open_dataset",
    "probe_image",
    "read_image",
    "to_float",
]
