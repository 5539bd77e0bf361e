"""Reader of CellProfiler LoadData CSVs (the form JUMP and the Cell Painting Gallery ship).

One row per site: ``FileName_<Channel>`` and ``PathName_<Channel>`` (or one ``URL_<Channel>``)
for each channel, and ``Metadata_*`` columns (``Metadata_Plate``, ``Metadata_Well``,
``Metadata_Site``, ...). CellProfiler's exported per-image tables spell the same columns with an
``Image_`` prefix (``Image_FileName_DNA``, ``Image_PathName_DNA``, ``Image_Metadata_Plate``);
they are read as the unprefixed names.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import pandas as pd

from .base import Entry, ImageDataset
from .errors import LayoutError, MetadataMismatchError, MissingChannelError
from .imageio import IMAGE_SUFFIXES
from .platemeta import PlateMap
from .storage import is_url

__all__ = ["LoadDataDataset", "legacy_columns", "loaddata_channels"]

logger = logging.getLogger(__name__)

_ID_COLUMNS = ("Metadata_Plate", "Metadata_Well", "Metadata_Site")
#: Column kinds CellProfiler's per-image export writes with an ``Image_`` prefix.
_LEGACY_KINDS = ("FileName_", "PathName_", "URL_", "Metadata_", "ObjectsFileName_", "ObjectsPathName_")


def legacy_columns(columns: Sequence[str]) -> dict[str, str]:
    """Renames of ``Image_``-prefixed LoadData columns to their unprefixed names.

    A prefixed column is renamed only when its unprefixed twin is absent, so a CSV carrying
    both keeps the unprefixed one.

    Examples
    --------
    >>> legacy_columns(["Image_FileName_DNA", "Image_PathName_DNA", "Metadata_Plate",
    ...                 "Image_Metadata_Plate", "Image_Count_Cells"])
    {'Image_FileName_DNA': 'FileName_DNA', 'Image_PathName_DNA': 'PathName_DNA'}
    """
    present = set(columns)
    renames = {}
    for column in columns:
        bare = column[len("Image_"):]
        if column.startswith("Image_") and bare.startswith(_LEGACY_KINDS) and bare not in present:
            renames[column] = bare
    return renames


def _url_path(url: str) -> str:
    """The path part of a URL (its file name tells whether it names an image)."""
    return unquote(urlparse(url).path) if "://" in url else url

def loaddata_channels(columns: Sequence[str], first_row: Mapping[str, Any],
                      where: str = "LoadData CSV") -> tuple[str, ...]:
    """Channels of a LoadData table: ``X`` for each ``FileName_X`` or ``URL_X`` naming an image.

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
        No ``FileName_*`` or ``URL_*`` column, or a ``FileName_*`` without its ``PathName_*``
        (and no ``URL_*``).

    Examples
    --------
    >>> loaddata_channels(["URL_DNA", "FileName_RNA", "PathName_RNA"],
    ...                   {"URL_DNA": "file:///data/a%20b/dna.tif", "FileName_RNA": "rna.png"})
    ('DNA', 'RNA')
    """
    names = list(dict.fromkeys(c.split("_", 1)[1] for c in columns
                               if c.startswith(("FileName_", "URL_"))))
    if not names:
        raise LayoutError(f"{where} has no FileName_<Channel> or URL_<Channel> columns; "
                          f"found {list(columns)[:10]}")
    lacking = [n for n in names if f"URL_{n}" not in columns and f"PathName_{n}" not in columns]
    if lacking:
        raise LayoutError(f"{where} has FileName_ columns without PathName_ columns for {lacking}")

    def named(n: str) -> str:
        value = first_row.get(f"FileName_{n}") if f"FileName_{n}" in columns else None
        return str(value) if value is not None and not pd.isna(value) else _url_path(str(first_row.get(f"URL_{n}", "")))

    images = [n for n in names if Path(named(n)).suffix.lower() in IMAGE_SUFFIXES]
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
        Folder holding the CSV, or the CSV itself (``cellcompare extract load_data.csv``, as
        CellProfiler's ``-d load_data.csv``); relative ``PathName_*`` values are relative to the
        CSV's folder.
    csv : str
        The CSV, relative to ``root`` (or absolute); ignored when ``root`` is the CSV.
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
        if Path(root).is_file():            # the CSV itself: its folder is the root
            root, csv = Path(root).parent, str(Path(root).absolute())
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
        renames = legacy_columns(list(table.columns))
        if renames:
            logger.info("%s: reading CellProfiler's Image_ columns %s as %s", path,
                        list(renames)[:4], list(renames.values())[:4])
            table = table.rename(columns=renames)
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
        if not entries and self.skipped:
            raise MissingChannelError(f"no row of {path} has all its channel files; the first: "
                                      f"{self.skipped[0].reason}")
        return entries

    def _entry(self, csv: Path, line: int, row: dict, label: str | None) -> Entry | None:
        files, absent = [], []
        for channel in self.raw_channels:
            file = self._channel_file(csv, line, row, channel)
            if file is None or not file.is_file():
                absent.append(f"{channel}: {file}")
            files.append(str(file))
        if absent:   # one site's file gone is a batch job's skip, not the end of the run
            ids = {k: row[k] for k in _ID_COLUMNS if k in row}
            self._skip(f"{csv}:{line}", str(MissingChannelError(
                f"{csv} line {line} {ids}: channel files not found: {absent}")))
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

    def _channel_file(self, csv: Path, line: int, row: dict, channel: str) -> Path | None:
        """The file of one channel of a row: ``PathName``/``FileName``, else its ``URL``."""
        name = row.get(f"FileName_{channel}")
        if name:
            return self._file(csv, row.get(f"PathName_{channel}", ""), name)
        url = row.get(f"URL_{channel}")
        if not url:
            return None
        if url.startswith("file:"):
            return self._file(csv, "", unquote(urlparse(url).path))
        if is_url(url):
            local = self._local_folder(url)
            if local == url:
                raise LayoutError(f"{csv} line {line}: URL_{channel} {url} is not under the root this "
                                  f"CSV was opened from; open the CSV from its remote root "
                                  f"(cellcompare extract s3://bucket/prefix --layout loaddata)")
            return Path(local)
        return self._file(csv, "", url)

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
