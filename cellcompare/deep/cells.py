"""A deep cell model's input: crops of some images' cells, with the image and group of each crop.

:class:`CellInputs` is what ``DeepClassifier.fit_cells``, ``predict_cell_proba`` and
``predict_image_proba`` take. Comparison builds it from the run's crop cache
(``deep.crop_cache.CropCache.inputs``), serve from the images it is sent
(:meth:`CellInputs.from_samples`); both then go through the same normalisation
(:meth:`CellInputs.scaled`) and the same cell mean (``proba.mean_by``), so an exported model
sees the crops it was trained on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .crops import CROP_DTYPE, CellCrops, CropError, choose_cells, group_scales, sample_crops

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
    objects : pd.DataFrame or None
        Where each crop comes from (``Metadata_ObjectNumber``, ``Metadata_Location_Center_X/Y``),
        one row per used crop, when known (crops cut from samples: serve, ``score``).

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
    objects: Any = None
    #: :meth:`scaled` views made so far, by mode (the group means read every crop once).
    _scaled: dict = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        n = len(self.rows)
        if len(self.images) != n or len(self.groups) != n:
            raise CropError(f"{n} crops but {len(self.images)} image ids and {len(self.groups)} groups")

    def __len__(self) -> int:
        return len(self.rows)

    def scaled(self, normalize: str, *, means: Mapping[str, np.ndarray] | None = None) -> CellCrops:
        """The crops as the model reads them: divided by their group's or image's channel means.

        Parameters
        ----------
        normalize : {"none", "group", "image"}
            ``DeepConfig.normalize``; the means are those of these crops only (one side of a
            fold, or one served batch). Computed once per mode: the model's prediction and the
            Grad-CAM examples of the same crops share one view.
        means : mapping, optional
            ``normalize="group"`` only: ``{group: (C,) channel means}`` to divide those groups'
            crops by instead of their own means (statistics stored at training, e.g. for a
            served image without its plate); not cached.
        """
        if means is not None:
            if normalize != "group":
                raise CropError(f"stored group means apply to normalize='group', not {normalize!r}")
            return CellCrops(self.crops, self.rows,
                             group_scales(self.crops, self.rows, self.groups, means=means))
        if normalize not in self._scaled:
            keys = {"none": None, "group": self.groups, "image": self.images}
            if normalize not in keys:
                raise CropError(f"normalize must be one of {tuple(keys)}, found {normalize!r}")
            scale = None if keys[normalize] is None else group_scales(self.crops, self.rows, keys[normalize])
            self._scaled[normalize] = CellCrops(self.crops, self.rows, scale)
        return self._scaled[normalize]

    def bounded(self, limit: int | None, seed: int) -> CellInputs:
        """At most ``limit`` crops per image: the cells a bounded crop cache cuts.

        The choice is ``deep.crops.choose_cells`` on each image's ObjectNumbers and centres
        (``objects``), so a served image is predicted from the cells comparison used.

        Raises
        ------
        CropError
            ``limit`` is set but the crops do not say which cells they are (``objects``).
        """
        if limit is None:
            return self
        if self.objects is None:
            raise CropError("bounding crops per image needs their ObjectNumbers and centres (objects)")
        objects = self.objects.reset_index(drop=True)
        number = objects["Metadata_ObjectNumber"].to_numpy()
        centers = objects[["Metadata_Location_Center_Y", "Metadata_Location_Center_X"]].to_numpy(float)
        keep = [mine[choose_cells(number[mine], centers[mine], limit, seed)]
                for mine in (np.flatnonzero(self.images == sid) for sid in dict.fromkeys(self.images))]
        keep = np.concatenate(keep) if keep else np.zeros(0, np.int64)
        return CellInputs(self.crops, self.rows[keep], self.images[keep], self.groups[keep],
                          objects.iloc[keep].reset_index(drop=True))

    @classmethod
    def of_sample(cls, sample: Any, feature_config: Any, *, crop_size: int,
                  channels: Sequence[int] | None = None, mask: bool = False,
                  channel_names: Sequence[str] | None = None, group: str | None = None) -> CellInputs:
        """The crops of one in-memory sample (``deep.crops.sample_crops``), as serve cuts them.

        Crops are rounded to the crop cache's dtype (:data:`deep.crops.CROP_DTYPE`, float16),
        so a served image gives the model the crops a comparison run trained and tested it on.
        The group is ``group`` when given, else ``sample.group`` (``"None"`` without one).
        """
        cut, objects = sample_crops(sample, feature_config, crop_size=int(crop_size),
                                    channels=channels, mask=mask, channel_names=channel_names)
        key = str(group if group is not None else getattr(sample, "group", None))
        n = len(cut)
        return cls(cut.astype(CROP_DTYPE), np.arange(n), np.full(n, str(sample.id)), np.full(n, key),
                   objects)

    @classmethod
    def join(cls, parts: Sequence[CellInputs], crop_size: int) -> CellInputs:
        """One :class:`CellInputs` of the used crops of ``parts``, in order."""
        crops = [np.asarray(p.crops[p.rows]) for p in parts]
        joined = np.concatenate(crops) if crops else np.zeros((0, 0, crop_size, crop_size), CROP_DTYPE)
        images = np.concatenate([p.images for p in parts]) if parts else np.zeros(0, str)
        groups = np.concatenate([p.groups for p in parts]) if parts else np.zeros(0, str)
        known = [p.objects.iloc[p.rows] for p in parts if p.objects is not None]
        objects = (pd.concat(known, ignore_index=True) if parts and len(known) == len(parts)
                   else None)
        return cls(joined, np.arange(len(joined)), images.astype(str), groups.astype(str), objects)

    @classmethod
    def from_samples(cls, samples: Sequence[Any], feature_config: Any, *, crop_size: int,
                     channels: Sequence[int] | None = None, mask: bool = False,
                     channel_names: Sequence[str] | None = None) -> CellInputs:
        """Cut the crops of in-memory samples (:meth:`of_sample` each, then :meth:`join`).

        A sample's group is ``sample.group`` (``None`` for all samples without one: they form
        one group).
        """
        return cls.join([cls.of_sample(s, feature_config, crop_size=crop_size, channels=channels,
                                       mask=mask, channel_names=channel_names) for s in samples],
                        int(crop_size))


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
