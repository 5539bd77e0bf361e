"""Plate / well / site metadata under the Cell Painting column names (``Metadata_Plate`` ...).

Readers put these keys into each sample's metadata; feature tables copy every ``Metadata_*``
key, so pycytominer can aggregate on ``strata=["Metadata_Plate", "Metadata_Well"]``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

__all__ = ["PLATE_FIELDS", "TABLE_COLUMNS", "PlateMap", "metadata_columns", "plate_metadata"]

#: Reader-side names and the table column each one becomes.
PLATE_FIELDS: dict[str, str] = {
    "plate": "Metadata_Plate", "well": "Metadata_Well", "site": "Metadata_Site",
    "experiment": "Metadata_Experiment", "cell_type": "Metadata_CellType",
    "well_type": "Metadata_WellType",
}
#: Columns every feature table has (None where the layout does not know them).
TABLE_COLUMNS = ("Metadata_Plate", "Metadata_Well", "Metadata_Site")


def _text(value: Any) -> str | None:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if hasattr(value, "item"):  # numpy scalar
        value = value.item()
    return str(value)


def plate_metadata(**values: Any) -> dict[str, str]:
    """The ``Metadata_*`` entries of one sample from plain field values.

    Parameters
    ----------
    **values
        Any of ``plate``, ``well``, ``site``, ``experiment``, ``cell_type``, ``well_type``;
        None / NaN values are left out. Values become strings.

    Returns
    -------
    dict
        ``{"Metadata_Plate": ..., ...}``.

    Examples
    --------
    >>> from cellcompare.datasets.platemeta import plate_metadata
    >>> plate_metadata(plate="P1", well="D03", site=0)
    {'Metadata_Plate': 'P1', 'Metadata_Well': 'D03', 'Metadata_Site': '0'}
    """
    unknown = sorted(set(values) - set(PLATE_FIELDS))
    if unknown:
        raise ValueError(f"unknown plate metadata fields {unknown}; expected {list(PLATE_FIELDS)}")
    out = {}
    for key, value in values.items():
        text = _text(value)
        if text is not None:
            out[PLATE_FIELDS[key]] = text
    return out


def metadata_columns(metadata: Mapping[str, Any]) -> dict[str, str | None]:
    """The ``Metadata_*`` columns a feature table carries for one sample.

    Parameters
    ----------
    metadata : mapping
        A sample's metadata.

    Returns
    -------
    dict
        :data:`TABLE_COLUMNS` (None when unknown) followed by every other ``Metadata_*`` key of
        ``metadata``, as strings.
    """
    out: dict[str, str | None] = {c: _text(metadata.get(c)) for c in TABLE_COLUMNS}
    for key, value in metadata.items():
        if str(key).startswith("Metadata_") and key not in out:
            out[str(key)] = _text(value)
    return out


class PlateMap:
    """A plate map: what each well holds (label, well type, any ``Metadata_*`` columns).

    The CSV has a well column (``well`` or ``Metadata_Well``), optionally a plate column
    (``plate`` or ``Metadata_Plate``; without it every plate has this layout), the label column
    and optionally a well-type column (``well_type`` or ``Metadata_WellType``).

    Parameters
    ----------
    path : str or Path
        The CSV.
    label_column : str
        Column holding the label (e.g. ``Metadata_Compound``, ``sirna``).

    Raises
    ------
    MetadataMismatchError
        A required column is absent, or a (plate, well) is listed twice.
    """

    def __init__(self, path: str | Path, label_column: str = "label") -> None:
        from .errors import MetadataMismatchError

        self.path = Path(path)
        if not self.path.is_file():
            raise MetadataMismatchError(f"plate map {self.path} not found")
        table = pd.read_csv(self.path, dtype=str, keep_default_na=False, na_values=[""])
        self.well = next((c for c in ("well", "Metadata_Well") if c in table.columns), None)
        self.plate = next((c for c in ("plate", "Metadata_Plate") if c in table.columns), None)
        well_type = next((c for c in ("well_type", "Metadata_WellType") if c in table.columns), None)
        if self.well is None or label_column not in table.columns:
            raise MetadataMismatchError(
                f"plate map {self.path} needs a 'well' (or 'Metadata_Well') column and the label "
                f"column {label_column!r}; it has {list(table.columns)}")
        self._rows: dict[tuple[str | None, str], dict[str, Any]] = {}
        for row in table.to_dict("records"):
            key = (row[self.plate] if self.plate else None, str(row[self.well]).upper())
            if key in self._rows:
                raise MetadataMismatchError(f"plate map {self.path} lists well {key[1]}"
                                            f"{' of plate ' + str(key[0]) if key[0] else ''} twice")
            extra = {k: _text(v) for k, v in row.items() if str(k).startswith("Metadata_")
                     and k not in (self.well, self.plate)}
            if well_type is not None:
                extra["Metadata_WellType"] = _text(row[well_type])
            label = _text(row[label_column])
            self._rows[key] = {"label": label,
                               "metadata": {k: v for k, v in extra.items() if v is not None}}

    def lookup(self, plate: str | None, well: str | None) -> dict[str, Any] | None:
        """``{"label", "metadata"}`` of a well, or None when the map does not list it."""
        if well is None:
            return None
        return self._rows.get((plate if self.plate else None, str(well).upper()))
