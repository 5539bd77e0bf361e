"""Exceptions raised by the dataset readers.

Every exception subclasses :class:`DatasetError`, itself a :class:`ValueError`, so a caller can
catch one family, and every message names the path and what was expected versus found.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "DatasetError",
    "MissingChannelError",
    "ChannelShapeError",
    "UnreadableImageError",
    "ImageTooLargeError",
    "EmptyClassError",
    "MetadataMismatchError",
    "LayoutError",
    "UnlabelledError",
    "SkipRecord",
]


class DatasetError(ValueError):
    """Base class of every error about the content or layout of a dataset folder."""


class MissingChannelError(DatasetError):
    """A sample lacks the file of one of its channels."""


class ChannelShapeError(DatasetError):
    """The channel files of one sample (or the samples of one dataset) disagree in shape."""


class UnreadableImageError(DatasetError):
    """An image file cannot be decoded (truncated, corrupt, unsupported)."""


class ImageTooLargeError(UnreadableImageError):
    """An image file declares more pixels than the configured limit (checked from its header)."""


class EmptyClassError(DatasetError):
    """A class folder holds no image file."""


class MetadataMismatchError(DatasetError):
    """A metadata table and the image files on disk disagree."""


class LayoutError(DatasetError):
    """The folder does not match the requested (or any known) layout."""


class UnlabelledError(DatasetError):
    """Samples lack a label where labels are required."""


@dataclass(frozen=True)
class SkipRecord:
    """One input left out because ``on_error="skip"`` was asked for.

    Attributes
    ----------
    path : str
        The file (or folder, or metadata row) that was left out.
    reason : str
        The message of the error that would have been raised.
    """

    path: str
    reason: str
