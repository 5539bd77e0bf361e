"""How a ``datasets.Sample`` becomes a deep model's input: the one path for training and serving.

The deep family sees each image as float32 ``(C, H, W)`` scaled to [0, 1] by its dtype
(``Sample.float_image``: uint8 / 255, uint16 / 65535, floats clipped), restricted to the
configured channel subset. Per-channel normalisation (mean / std of the training images) and
resizing happen inside :class:`~cellcompare.deep.DeepClassifier`. Comparison's adapters and
serve's predictor both call :func:`sample_input`, so an exported model is served exactly the
inputs it was trained on.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["SampleImages", "sample_input"]


def sample_input(sample: Any, channels: Sequence[int] | None = None) -> np.ndarray:
    """The deep model input of one sample.

    Parameters
    ----------
    sample : datasets.Sample
        Anything with ``float_image`` (``(C, H, W)`` float32 in [0, 1]).
    channels : sequence of int, optional
        Positions of the channels the model uses, in model order; ``None`` keeps all.

    Returns
    -------
    np.ndarray
        float32 ``(len(channels), H, W)`` in [0, 1].

    Raises
    ------
    IndexError
        A channel position is beyond the sample's channel count (message names the sample).

    Examples
    --------
    >>> from cellcompare.datasets import Sample
    >>> s = Sample(id="a", image=np.full((3, 2, 2), 255, np.uint8))
    >>> sample_input(s, [2, 0]).shape, float(sample_input(s).max())
    ((2, 2, 2), 1.0)
    """
    image = sample.float_image
    if channels is None:
        return image
    index = [int(c) for c in channels]
    if index and max(index) >= image.shape[0]:
        raise IndexError(f"sample {getattr(sample, 'id', '?')!r} has {image.shape[0]} channels; "
                         f"the model uses channel positions {index}")
    return image[index]


class SampleImages(Sequence):
    """Lazy sequence of :func:`sample_input` arrays, read from a dataset by sample id on access.

    Parameters
    ----------
    dataset : datasets.ImageDataset
        Anything with ``get(sample_id) -> Sample`` (and ``ids`` when ``sample_ids`` is None).
    sample_ids : sequence of str, optional
        Which samples, in order; ``None`` means every sample of ``dataset``.
    channels : sequence of int, optional
        Channel positions passed to :func:`sample_input`.
    """

    def __init__(self, dataset: Any, sample_ids: Sequence[str] | None = None, *,
                 channels: Sequence[int] | None = None) -> None:
        self.dataset = dataset
        ids = dataset.ids if sample_ids is None else sample_ids
        self.sample_ids = [str(s) for s in ids]
        self.channels = None if channels is None else [int(c) for c in channels]

    def __len__(self) -> int:
        return len(self.sample_ids)

    def __getitem__(self, i: int) -> np.ndarray:  # type: ignore[override]
        return sample_input(self.dataset.get(self.sample_ids[i]), self.channels)
