"""The uniform record every reader returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["Sample", "to_float"]


def to_float(image: np.ndarray) -> np.ndarray:
    """Scale an image of any dtype to float32 in [0, 1].

    Parameters
    ----------
    image : np.ndarray
        Array of any shape. Integer dtypes are divided by their dtype maximum, booleans map to
        {0, 1}, floats are clipped to [0, 1].

    Returns
    -------
    np.ndarray
        float32 array of the same shape.

    Examples
    --------
    >>> import numpy as np
    >>> from cellcompare.datasets import to_float
    >>> to_float(np.array([0, 255], dtype=np.uint8)).tolist()
    [0.0, 1.0]
    >>> to_float(np.array([0, 32768, 65535], dtype=np.uint16)).round(3).tolist()
    [0.0, 0.5, 1.0]
    >>> to_float(np.array([-0.5, 0.25, 2.0])).tolist()
    [0.0, 0.25, 1.0]
    """
    if image.dtype == bool:
        return image.astype(np.float32)
    if np.issubdtype(image.dtype, np.integer):
        info = np.iinfo(image.dtype)
        out = image.astype(np.float32) / np.float32(info.max)
        return np.clip(out, 0.0, 1.0) if info.min < 0 else out
    return np.clip(image.astype(np.float32), 0.0, 1.0)


@dataclass(frozen=True)
class Sample:
    """One image of a dataset with its label, group and metadata.

    Attributes
    ----------
    id : str
        Unique sample id within the dataset (RxRx1 ``site_id``, file stem for folders).
    image : np.ndarray
        Pixels, shape ``(C, H, W)``, native dtype of the files.
    label : str or None
        Class label (RxRx1 ``sirna``, class folder name); None when unlabelled.
    group : str or None
        Batch the image belongs to (plate, experiment, position) for group-aware splits.
    metadata : dict
        Layout-specific metadata (the RxRx1 metadata row, the channel names, ...).
    paths : tuple of str
        Files the image was read from, one per channel file.
    """

    id: str
    image: np.ndarray
    label: str | None = None
    group: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    paths: tuple[str, ...] = ()

    @property
    def float_image(self) -> np.ndarray:
        """float32 ``(C, H, W)`` view of :attr:`image` scaled to [0, 1]."""
        return to_float(self.image)

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of the image."""
        return tuple(self.image.shape)  # type: ignore[return-value]
