"""Per-image and per-well class fractions of cells: CellProfiler Analyst's "score all" table.

A cell task ends in the question a lab asks of every image or well: how many of its cells are
positive? :func:`class_fractions` counts the cells of each class per unit (an image, a well)
and gives each class's fraction; comparison writes it for the labelled cells (truth and the
models' out-of-fold predictions, ``cells/fractions.csv``) and ``cellcompare score`` for every
cell of new images. :func:`fraction_column` names the column of one class.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import pandas as pd

__all__ = ["class_fractions", "fraction_column", "plate_wells", "positive_class", "well_position"]

_WELL = re.compile(r"^\s*([A-Za-z]{1,2})[-_ ]?0*(\d{1,3})\s*$")


def fraction_column(label: str) -> str:
    """The column holding the fraction of cells of class ``label``."""
    return f"fraction_{label}"


def class_fractions(cells: pd.DataFrame, by: Sequence[str], label: str,
                    classes: Sequence[str]) -> pd.DataFrame:
    """Cells of each class per unit: counts ``n_<class>``, fractions and ``n_cells``.

    Parameters
    ----------
    cells : pd.DataFrame
        One row per cell with the ``by`` columns and the ``label`` column.
    by : sequence of str
        The unit columns (``["image"]``, ``["plate", "well"]``).
    label : str
        The column holding each cell's class (truth or prediction).
    classes : sequence of str
        Every class, in order: a class no cell of a unit has counts 0.

    Returns
    -------
    pd.DataFrame
        ``by..., n_cells, n_<class>..., fraction_<class>...``, one row per unit (sorted).

    Examples
    --------
    >>> import pandas as pd
    >>> cells = pd.DataFrame({"image": ["a", "a", "a", "b"], "p": ["pos", "neg", "neg", "neg"]})
    >>> class_fractions(cells, ["image"], "p", ["neg", "pos"])[["image", "n_cells", "fraction_pos"]]
      image  n_cells  fraction_pos
    0     a        3      0.333333
    1     b        1      0.000000
    """
    by = list(by)
    classes = [str(c) for c in classes]
    unknown = sorted(set(cells[label].astype(str)) - set(classes))
    if unknown:
        raise ValueError(f"column {label!r} holds classes {unknown} not among {classes}")
    counts = (pd.crosstab([cells[c] for c in by], cells[label].astype(str))
              .reindex(columns=classes, fill_value=0))
    total = counts.sum(axis=1)
    frame = counts.rename(columns=lambda c: f"n_{c}")
    frame.insert(0, "n_cells", total)
    for c in classes:
        frame[fraction_column(c)] = counts[c] / total.where(total > 0, np.nan)
    frame.columns.name = None
    return frame.reset_index()


def positive_class(classes: Sequence[str], info: dict | None = None,
                   counts: dict | None = None) -> str:
    """The class whose fraction answers "how many are positive?".

    The gate's ``above`` class where the labels come from a gate (``info``: ``metrics.json``
    ``labels``), else the rarest class of ``counts`` (ties: the first in ``classes``).

    Examples
    --------
    >>> positive_class(["interphase", "mitotic"], {"source": "gate", "above": "mitotic"})
    'mitotic'
    >>> positive_class(["a", "b", "c"], counts={"a": 9, "b": 2, "c": 5})
    'b'
    """
    classes = [str(c) for c in classes]
    above = (info or {}).get("above")
    if (info or {}).get("source") == "gate" and above in classes:
        return str(above)
    if counts:
        return min(classes, key=lambda c: (int(counts.get(c, 0)), classes.index(c)))
    return classes[-1]


def plate_wells(index: pd.DataFrame) -> pd.DataFrame:
    """Plate and well of each image of a dataset index (``well`` None where unknown).

    The plate is ``Metadata_Plate``, else the index's ``group``, else ``""``; the well is
    ``Metadata_Well`` (every layout that reads wells names them so).

    Examples
    --------
    >>> import pandas as pd
    >>> index = pd.DataFrame({"sample_id": ["s1", "s2"], "Metadata_Plate": ["P1", "P1"],
    ...                       "Metadata_Well": ["B02", "B03"]})
    >>> plate_wells(index).to_dict("records")[0]
    {'sample_id': 's1', 'plate': 'P1', 'well': 'B02'}
    """
    ids = index["sample_id"].astype(str).to_numpy()
    if "Metadata_Plate" in index.columns:
        plate = index["Metadata_Plate"]
    elif "group" in index.columns:
        plate = index["group"]
    else:
        plate = pd.Series([""] * len(index))
    plate = plate.astype(object).where(plate.notna(), "").astype(str).to_numpy()
    well = (index["Metadata_Well"].astype(object).where(index["Metadata_Well"].notna(), None)
            .to_numpy() if "Metadata_Well" in index.columns else [None] * len(index))
    return pd.DataFrame({"sample_id": ids, "plate": plate, "well": list(well)})


def well_position(well: str) -> tuple[int, int] | None:
    """``(row, column)`` from 0 of a well name (``B02``, ``A-01``, ``AA 12``), None if not one.

    Examples
    --------
    >>> well_position("B02"), well_position("A-12"), well_position("r01c01")
    ((1, 1), (0, 11), None)
    """
    match = _WELL.match(str(well))
    if match is None:
        return None
    letters, number = match.group(1).upper(), int(match.group(2))
    row = 0
    for ch in letters:
        row = row * 26 + (ord(ch) - ord("A") + 1)
    return row - 1, number - 1
