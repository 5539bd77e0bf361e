"""A torch Dataset over a (possibly lazy) sequence of ``(C, H, W)`` arrays.

The sequence is indexed only in ``__getitem__``, so a reader that loads pixels on access
(:class:`cellcompare.deep.inputs.SampleImages`) is read one image at a time, inside the
DataLoader workers.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision.transforms.v2 import functional as F

from cellcompare.progress import progress_bar

from .errors import ImageInputError

logger = logging.getLogger(__name__)


def as_chw(image: object, index: int, channels: int | None = None) -> np.ndarray:
    """Validate one image and return it as float32 ``(C, H, W)``.

    Raises
    ------
    ImageInputError
        Not 3-D, or its channel count differs from ``channels``.
    """
    array = np.asarray(image)
    if array.ndim != 3:
        raise ImageInputError(f"image {index}: expected shape (C, H, W), found {array.shape}")
    if channels is not None and array.shape[0] != channels:
        raise ImageInputError(f"image {index}: expected {channels} channels, found {array.shape[0]} "
                              f"(shape {array.shape})")
    return array.astype(np.float32, copy=False)


def image_sums(array: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-channel sums of the pixels and of their squares, and the pixel count, of one image.

    float64 ``(C,)`` each, summed as :func:`channel_stats` sums them (the input cache stores
    them per image, so cached folds get the statistics of the decoded images bit for bit).

    Examples
    --------
    >>> [s.tolist() for s in image_sums(np.ones((1, 2, 2), np.float32) * 2)]
    [[8.0], [16.0], [4.0]]
    """
    flat = np.asarray(array, dtype=np.float64).reshape(array.shape[0], -1)
    return flat.sum(1), (flat ** 2).sum(1), np.full(array.shape[0], float(flat.shape[1]))


def channel_stats(images: Sequence, indices: Sequence[int] | None = None, *,
                  progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation over the pixels of ``images[indices]``.

    Computed in float64 over all pixels of the training images only (pass the training
    indices); the std is floored at 1e-6 so a constant channel does not divide by zero. A
    sequence with ``pixel_sums(indices)`` (``deep.input_cache.CachedImages``: sums of the
    images before resizing, stored when they were decoded) is not read again.

    Returns
    -------
    mean, std : np.ndarray
        Shape ``(C,)``, float32.
    """
    indices = range(len(images)) if indices is None else indices
    if hasattr(images, "pixel_sums"):
        total, total_sq, count = images.pixel_sums(list(indices))
    else:
        total = total_sq = count = None
        channels = None
        for i in progress_bar(indices, desc="channel stats", enabled=progress, leave=False):
            array = as_chw(images[i], i, channels)
            channels = array.shape[0]
            sums = image_sums(array)
            total, total_sq, count = sums if total is None else (total + sums[0], total_sq + sums[1],
                                                                 count + sums[2])
        if total is None:
            raise ImageInputError("cannot compute channel statistics on zero images")
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean ** 2, 0.0))
    return mean.astype(np.float32), np.maximum(std, 1e-6).astype(np.float32)


def resize_crop(image: torch.Tensor, size: int) -> torch.Tensor:
    """Resize the shorter side to ``size`` (bilinear, antialiased) and centre-crop to a square."""
    h, w = image.shape[-2:]
    if (h, w) != (size, size):
        if min(h, w) != size:
            image = F.resize(image, [size], antialias=True)
        image = F.center_crop(image, [size, size])
    return image


def resize_pad(image: torch.Tensor, size: int) -> torch.Tensor:
    """Resize the longer side to ``size`` (bilinear, antialiased) and zero-pad to a square.

    The aspect ratio is kept, so a long object (a 1110x420 embryo) keeps both ends; the padding
    is split evenly between the two sides of the short axis.

    Examples
    --------
    >>> resize_pad(torch.ones(1, 2, 8), 4)[0].tolist()
    [[0.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]
    """
    h, w = image.shape[-2:]
    if (h, w) == (size, size):
        return image
    scale = size / max(h, w)
    new_h, new_w = max(1, min(size, round(h * scale))), max(1, min(size, round(w * scale)))
    if (new_h, new_w) != (h, w):
        image = F.resize(image, [new_h, new_w], antialias=True)
    top, left = (size - new_h) // 2, (size - new_w) // 2
    return F.pad(image, [left, top, size - new_w - left, size - new_h - top], fill=0.0)


RESIZERS = {"pad": resize_pad, "crop": resize_crop}


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run the enclosed per-image tensor ops on one intra-op thread, then restore the count.

    A DataLoader worker already runs on one thread; with ``num_workers=0`` (the CPU default) the
    main process would split each 6 x 256² op over every core, and on busy cores each split
    waits for a descheduled thread: the training augmentation took 74 ms an image on 2 loaded
    cores against 1.9 ms on one (benchmarks/loader_bench.py, RESULTS.md).

    Examples
    --------
    >>> n = torch.get_num_threads()
    >>> with one_thread():
    ...     inside = torch.get_num_threads()
    >>> inside, torch.get_num_threads() == n
    (1, True)
    """
    threads = torch.get_num_threads()
    if threads == 1:
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class ImageTensorDataset(Dataset):
    """Images as normalised float tensors, with optional augmentation.

    Parameters
    ----------
    images : Sequence
        Each item a ``(C, H, W)`` array (read on access).
    labels : np.ndarray or None
        Integer class indices aligned with ``images``; ``None`` for prediction (label -1).
    mean, std : np.ndarray
        Per-channel statistics, shape ``(C,)``; normalisation is applied after augmentation so
        masking and jitter act on raw intensities.
    image_size : int
        Output side length.
    indices : Sequence of int, optional
        Subset of ``images`` to expose.
    transform : callable, optional
        Augmentation on the resized raw ``(C, H, W)`` tensor.
    resize : {"pad", "crop"}
        :func:`resize_pad` (keep the aspect ratio) or :func:`resize_crop` (centre square).
    """

    def __init__(self, images: Sequence, labels: np.ndarray | None, *, mean: np.ndarray,
                 std: np.ndarray, image_size: int, indices: Sequence[int] | None = None,
                 transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
                 resize: str = "pad") -> None:
        self.images = images
        self.labels = None if labels is None else np.asarray(labels, dtype=np.int64)
        self.indices = np.arange(len(images)) if indices is None else np.asarray(indices)
        self.mean = torch.as_tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.as_tensor(std, dtype=torch.float32).view(-1, 1, 1)
        self.image_size = image_size
        self.transform = transform
        if resize not in RESIZERS:
            raise ImageInputError(f"resize must be one of {sorted(RESIZERS)}, found {resize!r}")
        self.resize = RESIZERS[resize]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, item: int) -> tuple[torch.Tensor, int]:
        with one_thread():
            return self._item(item)

    def _item(self, item: int) -> tuple[torch.Tensor, int]:
        index = int(self.indices[item])
        array = as_chw(self.images[index], index, self.mean.shape[0])
        image = self.resize(torch.from_numpy(np.ascontiguousarray(array)), self.image_size)
        if self.transform is not None:
            image = self.transform(image)
        image = (image - self.mean) / self.std
        label = -1 if self.labels is None else int(self.labels[index])
        return image, label

