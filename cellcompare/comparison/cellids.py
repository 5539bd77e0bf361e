"""Cell ids: ``"{sample_id}#{object number}"`` names a cell in the folds and predictions of a cell task."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

__all__ = ["CELL_COLUMN", "cell_id", "image_of_cell"]

#: Cell id column of a cell task's cell table (:func:`cell_id`).
CELL_COLUMN = "Metadata_cell_id"


def cell_id(sample_ids: Any, object_numbers: Any) -> np.ndarray:
    """``"{sample_id}#{object number}"``: the id of a cell in folds and predictions.

    Examples
    --------
    >>> from cellcompare.comparison.task import cell_id
    >>> cell_id(["site_1", "site_1"], [3, 12]).tolist()
    ['site_1#3', 'site_1#12']
    """
    return np.array([f"{s}#{int(o)}" for s, o in zip(sample_ids, object_numbers)], dtype=object)


def image_of_cell(cell_ids: Any) -> np.ndarray:
    """The image id of each cell id (the part before the last ``#``).

    Examples
    --------
    >>> from cellcompare.comparison.task import image_of_cell
    >>> image_of_cell(["a#b#3", "c#1"]).tolist()
    ['a#b', 'c']
    """
    return pd.Series([str(c) for c in cell_ids], dtype=object).str.rsplit("#", n=1).str[0].to_numpy()
