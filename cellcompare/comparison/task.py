"""What a run classifies: images (:class:`ImageTask`) or cells (:class:`CellTask`).

A task is the mode of a run as an object (``labels.level``). Both have the same fields --
the fold index, the classes, the folds configuration, the feature tables, the channels the
models see, the ``metrics.json`` ``labels`` entry and the units over which uncertainty is
resampled -- and the same methods, which carry what differs: which column of a feature table
names a unit (:attr:`key`), which crops of a crop cache belong to some units
(:meth:`crop_rows`), which image each unit lies in (:meth:`images_of`), whether wells are
scored (:meth:`wells`) and the cell gallery (:meth:`write_gallery`). The runner, the fold
data and the adapters take the task and never ask which one it is.

``comparison.prepare.build_task`` builds the task of a run, once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd

from cellcompare.classical.inputs import feature_rows
from cellcompare.comparison.cellids import CELL_COLUMN, cell_id, image_of_cell
from cellcompare.comparison.gallery import write_cell_fractions, write_cell_gallery
from cellcompare.comparison.uncertainty import well_units
from cellcompare.comparison.wells import well_results
from cellcompare.fractions import positive_class

__all__ = ["CellTask", "ImageTask", "Task"]


@dataclass(frozen=True, eq=False)
class Task:
    """The fields every task has; :class:`ImageTask` and :class:`CellTask` add what differs.

    Attributes
    ----------
    index : pd.DataFrame
        One row per unit: ``sample_id``, ``label``, ``group`` plus the dataset's index columns.
    classes : tuple of str
        The global class order of every probability table.
    folds : comparison.config.FoldsConfig
        The folds configuration that splits ``index``.
    image_table, cell_table : pd.DataFrame or None
        Feature tables the models read (``None`` where no model reads them).
    channel_index : tuple of int or None
        Dataset channels deep models see (``dataset.channels``; ``None``: all).
    class_counts : dict
        Units per class (the report's caveats and the primary metric follow it).
    info : dict
        ``metrics.json`` ``labels`` entry.
    units : dict
        ``comparison.uncertainty.uncertainty`` keyword arguments: the resampling unit of the
        bootstrap intervals (wells, where the layout has them).

    Examples
    --------
    >>> import pandas as pd
    >>> from cellcompare.comparison.task import ImageTask
    >>> index = pd.DataFrame({"sample_id": ["a", "b"], "label": ["x", "y"], "group": ["p", "p"]})
    >>> task = ImageTask(index, ("x", "y"))
    >>> task.key, task.units["unit"], task.images_of(["b"]).tolist()
    ('Metadata_sample_id', 'image', ['b'])
    """

    index: pd.DataFrame
    classes: tuple[str, ...]
    folds: Any = None
    image_table: pd.DataFrame | None = None
    cell_table: pd.DataFrame | None = None
    channel_index: tuple[int, ...] | None = None
    class_counts: dict = field(default_factory=dict)
    info: dict = field(default_factory=lambda: {"level": "image"})
    units: dict = field(default_factory=dict)

    #: ``labels.level`` of the task.
    level: ClassVar[str]
    #: The feature-table column that names a unit.
    key: ClassVar[str]
    #: What a unit is called in messages.
    unit_name: ClassVar[str]

    def record(self) -> dict[str, Any]:
        """``metrics.json`` ``task``: the level, what a unit is and units per class.

        The report's caveats (units per class, imbalance) read it, so that a cell task states
        its cells, not the images they lie in.

        Examples
        --------
        >>> import pandas as pd
        >>> from cellcompare.comparison.task import CellTask
        >>> index = pd.DataFrame({"sample_id": ["a#1", "a#2", "b#1"], "label": ["m", "i", "i"]})
        >>> CellTask(index, ("i", "m"), class_counts={"i": 2, "m": 1}).record()
        {'level': 'cell', 'unit_name': 'cells', 'class_counts': {'i': 2, 'm': 1}, 'n_units': 3}
        """
        counts = {str(k): int(v) for k, v in self.class_counts.items()}
        return {"level": self.level, "unit_name": self.unit_name, "class_counts": counts,
                "n_units": sum(counts.values())}

    def serve_record(self) -> dict[str, Any] | None:
        """``serve.json`` ``task`` of an exported model (``None``: an image task's)."""
        return None


@dataclass(frozen=True, eq=False)
class ImageTask(Task):
    """One label per image: folds, predictions and metrics are per image.

    The fields are :class:`Task`'s; ``units`` defaults to the wells of ``index`` where the
    layout has them (``comparison.uncertainty.well_units``).
    """

    level: ClassVar[str] = "image"
    key: ClassVar[str] = "Metadata_sample_id"
    unit_name: ClassVar[str] = "images"

    def __post_init__(self) -> None:
        if not self.units:
            object.__setattr__(self, "units", well_units(self.index))

    def rows(self, table: pd.DataFrame, ids: Sequence[str]) -> pd.DataFrame:
        """The rows of ``table`` (per image or per cell) that belong to the units ``ids``."""
        return feature_rows(table, ids)

    def images_of(self, ids: Sequence[str]) -> np.ndarray:
        """The image of each unit (an image is its own)."""
        return np.asarray([str(i) for i in ids], dtype=object)

    def inner_groups(self, train: Any, units: Sequence[str]) -> np.ndarray | None:
        """Groups of a classical model's inner folds for training rows of ``units``: none given.

        The estimator keeps an image's cells together itself (``TableClassifier.fit``), and
        image rows are split ungrouped, as before cell tasks existed.
        """
        return None

    def crop_rows(self, cache: Any, ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Positions in a crop cache of the crops of the units ``ids``, and each crop's unit.

        Parameters
        ----------
        cache : deep.crop_cache.CropCache
            The run's crops (``rows(ids)``, ``image_ids``: the image of each crop).
        ids : sequence of str
            The units, in order (images without cells add no crop).
        """
        rows = cache.rows(ids)
        return rows, cache.image_ids[rows]

    def crop_limit(self, cells_per_image: int | None) -> int | None:
        """Cells cut per image for a deep cell model with ``cells_per_image``: that bound.

        An image's prediction is the mean of its cells', so training and test read the same
        bounded, seeded choice (``deep.crops.choose_cells``) and the crop cache holds no other.
        """
        return cells_per_image

    def wells(self, out: Path, top_k: int) -> dict[str, Any]:
        """``metrics.json`` ``wells``: the models scored per well (``comparison.wells``)."""
        return well_results(out, self.index, self.classes, top_k)

    def write_fractions(self, out: Path, metrics: dict[str, Any]) -> dict[str, str]:
        """Nothing: an image task has no per-image cell fractions (a cell task's)."""
        return {}

    def write_gallery(self, out: Path, metrics: dict[str, Any], crops: Callable[[], Any]) -> None:
        """Nothing: image tasks have no cell gallery (a cell task's right and wrong cells).

        ``crops`` returns the crops the gallery shows (``RunContext.gallery_crops``); it is
        called only by a task that has a gallery.
        """


@dataclass(frozen=True, eq=False)
class CellTask(Task):
    """One label per cell (``labels.level: cell``): folds, predictions and metrics are per cell.

    The fields are :class:`Task`'s; ``index``'s ``sample_id`` holds cell ids
    (:func:`cell_id`) with an ``image`` column, ``cell_table`` the labelled, leak-guarded cells
    (with ``Metadata_cell_id``), ``info`` the source, threshold, counts and leak guard of the
    labels. ``gate_values`` (``cell_id, value, label`` of a gate's feature) feeds the report's
    histogram. Uncertainty resamples cells; wells are not scored.
    """

    info: dict = field(default_factory=lambda: {"level": "cell"})
    units: dict = field(default_factory=lambda: {"units": None, "unit": "cell"})
    gate_values: pd.DataFrame | None = None

    level: ClassVar[str] = "cell"
    key: ClassVar[str] = CELL_COLUMN
    unit_name: ClassVar[str] = "cells"

    def rows(self, table: pd.DataFrame, ids: Sequence[str]) -> pd.DataFrame:
        """The rows of the cell table whose cell id is in ``ids``."""
        wanted = set(map(str, ids))
        return table[table[CELL_COLUMN].astype(str).isin(wanted)].reset_index(drop=True)

    def images_of(self, ids: Sequence[str]) -> np.ndarray:
        """The image of each cell (:func:`image_of_cell`)."""
        return image_of_cell(ids)

    def inner_groups(self, train: Any, units: Sequence[str]) -> np.ndarray:
        """The outer folds' group of each training row's cell: inner folds follow the outer ones.

        Parameters
        ----------
        train : comparison.adapters.FoldData
            The training side (``groups``: each cell's fold group, ``folds.csv``'s ``group``:
            its image, a named column, or the cell itself under ``group_column: none``).
        units : sequence of str
            The cell of each training row.

        Examples
        --------
        >>> import numpy as np, pandas as pd
        >>> from types import SimpleNamespace
        >>> from cellcompare.comparison.task import CellTask
        >>> task = CellTask(pd.DataFrame({"sample_id": ["a#1", "a#2"], "label": ["m", "i"]}), ("i", "m"))
        >>> train = SimpleNamespace(sample_ids=np.array(["a#1", "a#2"]), groups=np.array(["a", "a"]))
        >>> task.inner_groups(train, ["a#2", "a#1"]).tolist()
        ['a', 'a']
        """
        group_of = dict(zip(map(str, train.sample_ids), map(str, train.groups)))
        return np.array([group_of[str(u)] for u in units], dtype=object)

    def crop_rows(self, cache: Any, ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Positions of the crops of the cells ``ids`` (one each; cells without a crop add none)."""
        cells = cache.cells
        crop_ids = cell_id(cells["Metadata_sample_id"].astype(str), cells["Metadata_ObjectNumber"])
        position = pd.Series(np.arange(len(crop_ids)), index=crop_ids)
        wanted = pd.Index(map(str, ids))
        rows = position.reindex(wanted[wanted.isin(position.index)]).to_numpy(dtype=np.int64)
        return rows, crop_ids.astype(str)[rows]

    def crop_limit(self, cells_per_image: int | None) -> int | None:
        """``None``: every labelled cell is a unit to predict, so every cell is cut (training
        draws ``cells_per_image`` per image per fold, ``DeepClassifier.fit_cells``)."""
        return None

    def serve_record(self) -> dict[str, Any]:
        """``serve.json`` ``task``: cells, the class counted positive and the leak guard.

        Examples
        --------
        >>> import pandas as pd
        >>> from cellcompare.comparison.task import CellTask
        >>> task = CellTask(pd.DataFrame({"sample_id": ["a#1"], "label": ["m"]}), ("i", "m"),
        ...                 info={"level": "cell", "source": "gate", "above": "m",
        ...                       "leak_guard": {"channel": "Marker"}})
        >>> task.serve_record()
        {'level': 'cell', 'positive': 'm', 'leak_guard_channel': 'Marker', 'classes': ['i', 'm']}
        """
        return {"level": "cell", "positive": self.positive,
                "leak_guard_channel": (self.info.get("leak_guard") or {}).get("channel"),
                "classes": list(self.classes)}

    @property
    def positive(self) -> str:
        """The class whose fraction per image answers the task (``fractions.positive_class``)."""
        return positive_class(self.classes, self.info, self.class_counts)

    def wells(self, out: Path, top_k: int) -> dict[str, Any]:
        """Not scored: a cell task's predictions are per cell."""
        return {"available": False, "reason": "labels.level: cell scores cells, not wells"}

    def write_fractions(self, out: Path, metrics: dict[str, Any]) -> dict[str, str]:
        """``cells/fractions.csv`` (positive fraction per image, truth and each model's) and
        ``cells/fetch_preview.csv`` (``comparison.gallery.write_cell_fractions``)."""
        return write_cell_fractions(out, metrics, self.index, self.positive)

    def write_gallery(self, out: Path, metrics: dict[str, Any], crops: Callable[[], Any]) -> None:
        """``cells/gallery.*``: right and wrong test cells per class (``comparison.gallery``)."""
        write_cell_gallery(out, metrics, crops())

