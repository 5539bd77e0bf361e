"""Data layer: lazy readers of microscopy datasets, synthetic data, exploration.

Examples
--------
A small synthetic Cell Painting dataset written in the RxRx1 layout, opened like any other
(the layout is detected; pixels are read in ``ds[i]``):

>>> import tempfile
>>> from cellcompare.datasets import open_dataset
>>> from cellcompare.datasets.synth import make_cellpainting
>>> root = make_cellpainting(tempfile.mkdtemp(), classes=2, per_class=1, size=64, plates=1)
>>> ds = open_dataset(root)
>>> type(ds).__name__, len(ds), ds.channel_names
('RxRx1Dataset', 2, ('DNA', 'ER', 'Actin', 'RNA', 'Mito', 'Golgi'))
>>> sample = ds[0]
>>> sample.image.shape, sample.label, sample.group
((6, 64, 64), 'siRNA_0001', 'HEPG2-01_P1')
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
