"""Reader of the RxRx1 layout: ``metadata.csv`` + ``images/{experiment}/Plate{p}/{well}_s{site}_w{c}.png``."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from .base import Entry, ImageDataset
from .errors import LayoutError, MetadataMismatchError, MissingChannelError
from .platemeta import plate_metadata

__all__ = ["RXRX1_CHANNELS", "RXRX1_COLUMNS", "RxRx1Dataset"]

RXRX1_CHANNELS = ("DNA", "ER", "Actin", "RNA", "Mito", "Golgi")
RXRX1_COLUMNS = ("site_id", "well_id", "cell_type", "dataset", "experiment", "plate", "well",
                 "site", "well_type", "sirna", "sirna_id")
_REQUIRED = ("experiment", "plate", "well", "site")
_FILE = re.compile(r"^(?P<well>[A-Za-z]+\d+)_s(?P<site>\d+)_w(?P<channel>\d+)\.png$", re.IGNORECASE)


def _site_key(experiment: str, plate: int, well: str, site: int) -> tuple[str, int, str, int]:
    return (str(experiment), int(plate), str(well).upper(), int(site))


class RxRx1Dataset(ImageDataset):
    """RxRx1-style Cell Painting sites, one 6-channel sample per site.

    The label is the ``sirna`` column (``label_column=``) and the group the plate
    (``"{experiment}_P{plate}"``; ``group_by="experiment"`` groups by experiment instead).
    Metadata rows without any image raise :class:`MetadataMismatchError`, rows lacking some
    channel files :class:`MissingChannelError`, image files with no row
    :class:`MetadataMismatchError` (or are recorded in ``skipped`` with ``on_error="skip"``).

    Parameters
    ----------
    root : str or Path
        Folder holding ``metadata.csv`` and ``images/``.
    label_column : str
        Metadata column used as the label.
    group_by : {"plate", "experiment"}
        What a group is.
    channel_names : sequence of str, optional
        Names of channels ``w1..wN`` (default :data:`RXRX1_CHANNELS`; files beyond ``w6`` are
        named ``w7``, ... unless named here). A channel with no file in any site raises
        :class:`MissingChannelError` naming it, whatever ``on_error`` says.
    **kwargs
        ``include_classes``, ``exclude_classes``, ``on_error``, ``check_headers`` as in
        :class:`~datasets.base.ImageDataset`.
    """

    layout = "rxrx1"

    def __init__(self, root: str | Path, *, label_column: str = "sirna",
                 group_by: Literal["plate", "experiment"] = "plate",
                 channel_names: Sequence[str] | None = None, **kwargs: Any) -> None:
        self.label_column = label_column
        self.group_by = group_by
        self._names = tuple(channel_names) if channel_names else None
        self._n_channels = len(self._names or RXRX1_CHANNELS)
        self._seen_labels: set[str] = set()
        super().__init__(root, **kwargs)

    def _known_filtered_classes(self) -> set[str]:
        # labels filtered out during the scan still count as present for include/exclude
        return self._seen_labels

    def _channel_names(self, n: int) -> Sequence[str]:
        names = self._names or RXRX1_CHANNELS
        return tuple(names[:n]) + tuple(f"w{i}" for i in range(len(names) + 1, n + 1))

    def _default_channel_count(self) -> int:
        return self._n_channels

    def _read_metadata(self) -> pd.DataFrame:
        path = self.root / "metadata.csv"
        if not path.is_file():
            raise MetadataMismatchError(f"RxRx1 layout needs {path}; not found")
        try:
            table = pd.read_csv(path, dtype={"well": str, "experiment": str, self.label_column: str})
        except (pd.errors.EmptyDataError, pd.errors.ParserError, UnicodeDecodeError) as exc:
            raise MetadataMismatchError(f"{path} is not a readable CSV table: {exc}") from exc
        missing = [c for c in (*_REQUIRED, self.label_column) if c not in table.columns]
        if missing:
            raise MetadataMismatchError(
                f"{path} lacks columns {missing}; expected the RxRx1 columns {list(RXRX1_COLUMNS)}"
            )
        if "site_id" not in table.columns:
            table["site_id"] = [f"{e}_{p}_{w}_{s}" for e, p, w, s in
                                zip(table.experiment, table.plate, table.well, table.site)]
        return table

    def _find_files(self) -> dict[tuple[str, int, str, int], dict[int, Path]]:
        images = self.root / "images"
        found: dict[tuple[str, int, str, int], dict[int, Path]] = defaultdict(dict)
        if not images.is_dir():
            return found
        for plate_dir in sorted(images.glob("*/Plate*")):
            plate = plate_dir.name[len("Plate"):]
            if not plate.isdigit():
                continue
            for path in sorted(plate_dir.iterdir()):
                match = _FILE.match(path.name)
                if match:
                    key = _site_key(plate_dir.parent.name, int(plate), match["well"], int(match["site"]))
                    found[key][int(match["channel"])] = path
        return found

    def _scan(self) -> list[Entry]:
        table = self._read_metadata()
        files = self._find_files()
        expected = self._expected_channels(files)
        entries, seen = [], set()
        for row in table.to_dict("records"):
            key = _site_key(row["experiment"], row["plate"], row["well"], row["site"])
            seen.add(key)
            label = None if pd.isna(row[self.label_column]) else str(row[self.label_column])
            self._seen_labels.add(str(label))
            if not self._wanted(label):
                continue
            entry = self._entry(row, key, label, files.get(key, {}), expected)
            if entry is not None:
                entries.append(entry)
        for key in sorted(set(files) - seen):
            path = next(iter(files[key].values()))
            self._fail(MetadataMismatchError(
                f"image {path} has no row in {self.root / 'metadata.csv'} "
                f"(expected a row with experiment={key[0]}, plate={key[1]}, well={key[2]}, site={key[3]})"
            ), path)
        return entries

    def _expected_channels(self, files: dict[tuple, dict[int, Path]]) -> range:
        """Channels ``1..n`` every site must have; a channel absent from all sites is an error.

        Without this, a dataset whose ``_w6`` files were never copied would silently become a
        5-channel dataset with shifted meaning.
        """
        found = {c for chans in files.values() for c in chans}
        if self._names is None:
            self._n_channels = max([len(RXRX1_CHANNELS), *found])
        expected = range(1, self._n_channels + 1)
        names = self._channel_names(self._n_channels)
        absent = [f"w{c} ({names[c - 1]})" for c in expected if c not in found]
        if files and absent:
            raise MissingChannelError(
                f"channel {', '.join(absent)} has no file in any site under {self.root / 'images'}; "
                f"expected files like {{well}}_s{{site}}_w{expected[-1]}.png for channels "
                f"{', '.join(names)}")
        extra = sorted(c for c in found if c > self._n_channels)
        if extra:
            raise LayoutError(
                f"{self.root / 'images'} has channel files w{extra[0]}.. beyond the "
                f"{self._n_channels} named channels {list(names)}; name them in channel_names")
        return expected

    def _entry(self, row: dict, key: tuple, label: str | None, present: dict[int, Path],
               expected: range) -> Entry | None:
        experiment, plate, well, site = key
        folder = self.root / "images" / experiment / f"Plate{plate}"
        wanted = [folder / f"{well}_s{site}_w{c}.png" for c in expected]
        if not present:
            self._fail(MetadataMismatchError(
                f"metadata row site_id={row['site_id']} has no image files; expected "
                f"{wanted[0]} .. {wanted[-1].name}"
            ), wanted[0])
            return None
        absent = [str(p) for c, p in zip(expected, wanted) if c not in present]
        if absent:
            self._fail(MissingChannelError(
                f"site {row['site_id']} lacks channel files {absent}; expected "
                f"w1..w{len(expected)} ({', '.join(self._channel_names(len(expected)))})"
            ), absent[0])
            return None
        group = experiment if self.group_by == "experiment" else f"{experiment}_P{plate}"
        metadata = {k: (v.item() if hasattr(v, "item") else v) for k, v in row.items()
                    if k != "site_id"}
        # the plate id is unique across experiments (RxRx1 numbers plates 1..4 per experiment)
        metadata.update(plate_metadata(plate=f"{experiment}_P{plate}", well=well, site=site,
                                       experiment=experiment, cell_type=row.get("cell_type"),
                                       well_type=row.get("well_type")))
        return Entry(sample_id=str(row["site_id"]), label=label, group=group,
                     paths=tuple(str(present[c]) for c in expected), metadata=metadata)
