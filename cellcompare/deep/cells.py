"""A deep cell model's input: crops of some images' cells, with the image and group of each crop.

:class:`CellInputs` is what ``DeepClassifier.fit_cells``, ``predict_cell_proba`` and
``predict_image_proba`` take. Comparison builds it from the run's crop cache
(``deep.crop_cache.CropCache.inputs``), serve from the images it is sent
(:meth:`CellInputs.from_samples`); both then go through the same normalisation
(:meth:`CellInputs.scaled`) and the same cell mean (``proba.mean_by``), so an exported model
sees the crops it was trained on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .crops import CellCrops, CropError, group_scales, sample_crops

__all__ = ["CellInputs", "per_image"]


@dataclass(frozen=True, eq=False)
class CellInputs:
    """Crops ``crops[rows]``, each with the id of its image and its group (plate).

    Attributes
    ----------
    crops : np.ndarray
        ``(N, C, S, S)`` float crops (a cache's float16 memmap, or float32 in memory).
    rows : np.ndarray
        int64 ``(M,)`` positions of the crops used, in order.
    images : np.ndarray
        str ``(M,)`` image (sample id) of each crop: the unit of ``normalize: image`` and of the
        cell mean.
    groups : np.ndarray
        str ``(M,)`` group of each crop (its plate): the unit of ``normalize: group``.

    Examples
    --------
    >>> import numpy as np
    >>> from cellcompare.deep.cells import CellInputs
    >>> crops = np.stack([np.full((1, 2, 2), v, np.float32) for v in (1.0, 3.0, 4.0)])
    >>> cells = CellInputs(crops, np.arange(3), np.array(["a", "a", "b"]), np.array(["p", "p", "p"]))
    >>> [float(cells.scaled("group")[i][0, 0, 0]) for i in range(3)]
    [0.375, 1.125, 1.5]
    >>> [float(cells.scaled("image")[i][0, 0, 0]) for i in range(3)]
    [0.5, 1.5, 1.0]
    """

    crops: np.ndarray
    rows: np.ndarray
    images: np.ndarray
    groups: np.ndarray
    #: :meth:`scaled` views made so far, by mode (the group means read every crop once).
    _scaled: dict = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        n = len(self.rows)
        if len(self.images) != n or len(self.groups) != n:
            raise CropError(f"{n} crops but {len(self.images)} image ids and {len(self.groups)} groups")

    def __len__(self) -> int:
        return len(self.rows)

    def scaled(self, normalize: str) -> CellCrops:
        """The crops as the model reads them: divided by their group's or image's channel means.

        Parameters
        ----------
        normalize : {"none", "group", "image"}
            ``DeepConfig.normalize``; the means are those of these crops only (one side of a
            fold, or one served batch). Computed once per mode: the model's prediction and the
            Grad-CAM examples of the same crops share one view.
        """
        if normalize not in self._scaled:
            keys = {"none": None, "group": self.groups, "image": self.images}
            if normalize not in keys:
                raise CropError(f"normalize must be one of {tuple(keys)}, found {normalize!r}")
            scale = None if keys[normalize] is None else group_scales(self.crops, self.rows, keys[normalize])
            self._scaled[normalize] = CellCrops(self.crops, self.rows, scale)
        return self._scaled[normalize]

    @classmethod
    def from_samples(cls, samples: Sequence[Any], feature_config: Any, *, crop_size: int,
                     channels: Sequence[int] | None = None, mask: bool = False,
                     channel_names: Sequence[str] | None = None) -> CellInputs:
        """Cut the crops of in-memory samples (``deep.crops.sample_crops``), as serve does.

        A sample's group is ``sample.group`` (``None`` for all samples without one: they form
        one group).
        """
        parts, images, groups = [], [], []
        for s in samples:
            cut, _ = sample_crops(s, feature_config, crop_size=int(crop_size), channels=channels,
                                  mask=mask, channel_names=channel_names)
            parts.append(cut)
            images += [str(s.id)] * len(cut)
            groups += [str(getattr(s, "group", None))] * len(cut)
        crops = np.concatenate(parts) if parts else np.zeros((0, 0, crop_size, crop_size), np.float32)
        return cls(crops, np.arange(len(crops)), np.array(images, dtype=str), np.array(groups, dtype=str))


def per_image(images: np.ndarray, limit: int | None, seed: int) -> np.ndarray:
    """Positions keeping at most ``limit`` crops per image, drawn once with ``seed`` (sorted).

    Examples
    --------
    >>> import numpy as np
    >>> from cellcompare.deep.cells import per_image
    >>> per_image(np.array(["a", "a", "a", "b"]), 2, seed=0).size
    3
    """
    positions = np.arange(len(images))
    if limit is None:
        return positions
    rng = np.random.default_rng(seed)
    keep = []
    for sid in np.unique(images):
        mine = positions[images == sid]
        keep.append(mine if len(mine) <= limit else rng.choice(mine, limit, replace=False))
    return np.sort(np.concatenate(keep)) if keep else positions[:0]
