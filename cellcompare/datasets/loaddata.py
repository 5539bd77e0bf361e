"""Reader of CellProfiler LoadData CSVs (the form JUMP and the Cell Painting Gallery ship).

One row per site: ``FileName_<Channel>`` and ``PathName_<Channel>`` for each channel, and
``Metadata_*`` columns (``Metadata_Plate``, ``Metadata_Well``, ``Metadata_Site``, ...).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from .base import Entry, ImageDataset
from .errors import LayoutError, MetadataMismatchError, MissingChannelError
from .imageio import IMAGE_SUFFIXES
from .platemeta import PlateMap
from .storage import is_url

__all__ = ["LoadDataDataset", "loaddata_channels"]

logger = logging.getLogger(__name__)

_ID_COLUMNS = ("Metadata_Plate", "Metadata_Well", "Metadata_Site")


def loaddata_channels(columns: Sequence[str], first_row: Mapping[str, Any],
                      where: str = "LoadData CSV") -> tuple[str, ...]:
    """Channels of a LoadData table: ``X`` for each ``FileName_X`` naming an image file.

    Parameters
    ----------
    columns : sequence of str
        The CSV's columns.
    first_row : mapping
        One row, to tell image channels from other files (JUMP's ``FileName_IllumDNA``
        ``.npy`` illumination functions are left out).
    where : str
        Named in error messages.

    Returns
    -------
    tuple of str
        Channel names in column order.

    Raises
    ------
    LayoutError
        No ``FileName_*`` column, or one without its ``PathName_*``.
    """
    names = [c[len("FileName_"):] for c in columns if c.startswith("FileName_")]
    if not names:
        raise LayoutError(f"{where} has no FileName_<Channel> columns; found {list(columns)[:10]}")
    lacking = [n for n in names if f"PathName_{n}" not in columns]
    if lacking:
        raise LayoutError(f"{where} has FileName_ columns without PathName_ columns for {lacking}")
    images = [n for n in names if Path(str(first_row[f"FileName_{n}"])).suffix.lower() in IMAGE_SUFFIXES]
    other = [n for n in names if n not in images]
    if other:
        logger.info("%s: FileName_ columns %s do not name images and are not channels", where, other)
    if not images:
        raise LayoutError(f"{where}: no FileName_ column names an image file ({list(IMAGE_SUFFIXES)})")
    return tuple(images)


class LoadDataDataset(ImageDataset):
    """One multi-channel sample per row of a CellProfiler LoadData CSV.

    Parameters
    ----------
    root : str or Path
        Folder holding the CSV; relative ``PathName_*`` values are relative to the CSV's folder.
    csv : str
        The CSV, relative to ``root`` (or absolute).
    label_column, group_column : str, optional
        Columns giving the label (e.g. ``Metadata_Compound``) and the fold group (default
        ``Metadata_Plate`` when present). Without a label column samples are unlabelled.
    platemap : str, optional
        CSV (relative to ``root``) giving each well's label (its ``label_column``) and well type
        by ``Metadata_Plate`` / ``Metadata_Well`` (:class:`~.platemeta.PlateMap`), for LoadData
        CSVs without the treatment (JUMP's); wells it does not list are unlabelled.
    channels : sequence of str, optional
        Channels (the ``X`` of ``FileName_X``) to read, in order; default every image channel.
    channel_names : mapping or sequence, optional
        Names replacing the ``X`` (``{"OrigDNA": "DNA"}``), or one name per channel.
    **kwargs
        ``include_classes``, ``exclude_classes``, ``on_error``, ``check_headers``, ...
    """

    layout = "loaddata"

    def __init__(self, root: str | Path, *, csv: str = "load_data.csv",
                 label_column: str | None = None, group_column: str | None = None,
                 channels: Sequence[str] | None = None,
                 channel_names: Mapping[str, str] | Sequence[str] | None = None,
                 platemap: str | None = None, **kwargs: Any) -> None:
        self.csv = csv
        path = Path(root) / platemap if platemap and not Path(platemap).is_absolute() else platemap
        self.platemap = PlateMap(path, label_column or "label") if path else None
        self.label_column = label_column
        self.group_column = group_column
        self.channels = tuple(channels) if channels else None
        self._rename = channel_names
        self._seen_labels: set[str] = set()
        self.raw_channels: tuple[str, ...] = ()
        super().__init__(root, **kwargs)

    def _known_filtered_classes(self) -> set[str]:
        return self._seen_labels

    def _read_table(self) -> tuple[Path, pd.DataFrame]:
        path = Path(self.csv) if Path(self.csv).is_absolute() else self.root / self.csv
        if not path.is_file():
            found = sorted(p.name for p in self.root.glob("*.csv"))
            raise MetadataMismatchError(f"LoadData CSV {path} not found; CSVs in {self.root}: {found}; "
                                        f"set dataset.options.csv")
        table = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
        if table.empty:
            raise MetadataMismatchError(f"LoadData CSV {path} has no rows")
        named = {"label_column": None if self.platemap else self.label_column,
                 "group_column": self.group_column}
        absent = {k: v for k, v in named.items() if v is not None and v not in table.columns}
        if absent:
            raise MetadataMismatchError(f"LoadData CSV {path} lacks the columns {absent}; its "
                                        f"Metadata columns are {[c for c in table if c.startswith('Metadata_')]}")
        return path, table

    def _scan(self) -> list[Entry]:
        path, table = self._read_table()
        found = loaddata_channels(list(table.columns), table.iloc[0], where=str(path))
        if self.channels is not None:
            unknown = [c for c in self.channels if c not in found]
            if unknown:
                raise LayoutError(f"channels {unknown} are not in {path}; its image channels are {list(found)}")
            found = self.channels
        self.raw_channels = found
        if self.group_column is None and "Metadata_Plate" in table.columns:
            self.group_column = "Metadata_Plate"
        entries = []
        for n, row in enumerate(table.to_dict("records"), start=2):  # line 1 is the header
            row = {k: v for k, v in row.items() if not pd.isna(v)}
            label = row.get(self.label_column) if self.label_column else None
            if self.platemap is not None:
                hit = self.platemap.lookup(row.get("Metadata_Plate"), row.get("Metadata_Well"))
                label = hit["label"] if hit else None
                row.update(hit["metadata"] if hit else {})
            self._seen_labels.add(str(label))
            if not self._wanted(label):
                continue
            entry = self._entry(path, n, row, label)
            if entry is not None:
                entries.append(entry)
        return entries

    def _entry(self, csv: Path, line: int, row: dict, label: str | None) -> Entry | None:
        files, absent = [], []
        for channel in self.raw_channels:
            name = row.get(f"FileName_{channel}")
            file = self._file(csv, row.get(f"PathName_{channel}", ""), name) if name else None
            if file is None or not file.is_file():
                absent.append(f"{channel}: {file}")
            files.append(str(file))
        if absent:
            self._fail(MissingChannelError(f"{csv} line {line}: channel files not found: {absent}"),
                       f"{csv}:{line}")
            return None
        metadata = {k: v for k, v in row.items() if k.startswith("Metadata_")}
        objects = {k[len("ObjectsFileName_"):]: str(self._file(csv, row.get("ObjectsPath" + k[len("ObjectsFile"):]), v))
                   for k, v in row.items() if k.startswith("ObjectsFileName_") and v}
        if objects:                                  # label images for features.masks: loaddata
            metadata["objects_files"] = objects
        if "Metadata_Site" not in metadata and "Metadata_Field" in metadata:
            metadata["Metadata_Site"] = metadata["Metadata_Field"]
        ids = [metadata[c] for c in _ID_COLUMNS if c in metadata]
        sample_id = "_".join(ids) if len(ids) == len(_ID_COLUMNS) else f"line{line}"
        group = row.get(self.group_column) if self.group_column else None
        return Entry(sample_id=sample_id, label=label, group=group, paths=tuple(files),
                     metadata=metadata)

    def _file(self, csv: Path, folder: Any, name: Any) -> Path:
        """The file ``PathName``/``FileName`` names (relative paths are relative to the CSV)."""
        file = Path(self._local_folder(str(folder or ""))) / str(name)
        return file if file.is_absolute() else csv.parent / file

    def _local_folder(self, folder: str) -> str:
        """A ``PathName`` URL under the remote root this CSV came from, as its mirror folder."""
        remote = getattr(self.fetch, "url", None)
        if is_url(folder) and remote and (folder.rstrip("/") + "/").startswith(remote + "/"):
            return str(self.root / folder.rstrip("/")[len(remote):].lstrip("/"))
        return folder

    def _channel_names(self, n: int) -> Sequence[str]:
        raw = tuple(self.raw_channels)
        if isinstance(self._rename, Mapping):
            names = tuple(self._rename.get(c, c) for c in raw)
        else:
            names = tuple(self._rename) if self._rename else raw
        if len(names) != n:
            raise LayoutError(f"channel names {list(names)} do not match the {n} channels of the "
                              f"images listed in {self.root / self.csv}")
        return names
