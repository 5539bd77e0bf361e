"""Reader of channel-file sets: one file per channel, e.g. ``01_POS002_D.TIF, _F, _R``."""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .base import Entry, ImageDataset
from .errors import EmptyClassError, LayoutError, MissingChannelError
from .imageio import is_image_file

__all__ = ["CHANNEL_FILE", "ChannelSetDataset", "find_channel_sets"]

CHANNEL_FILE = re.compile(r"^(?P<stem>.+)_(?P<channel>[A-Za-z0-9]+)$")


def find_channel_sets(folder: Path, paths: Iterable[Path] | None = None) -> dict[str, dict[str, Path]]:
    """Image files of ``folder`` (or ``paths`` in it) grouped by stem: ``{stem: {suffix: path}}``."""
    sets: dict[str, dict[str, Path]] = defaultdict(dict)
    for path in sorted(folder.iterdir() if paths is None else paths):
        if is_image_file(path):
            match = CHANNEL_FILE.match(path.stem)
            if match:
                sets[match["stem"]][match["channel"]] = path
    return dict(sets)


class ChannelSetDataset(ImageDataset):
    """One multi-channel sample per set of files sharing a stem and differing by a suffix.

    Files may lie directly in ``root`` (unlabelled) or in class sub-folders ``root/{class}/``.
    The channels are the suffixes found (sorted) unless ``suffixes=`` fixes them; a set lacking
    one raises :class:`MissingChannelError`.

    Parameters
    ----------
    root : str or Path
        Folder of channel files, or of class folders of channel files.
    suffixes : sequence of str, optional
        Channel suffixes in channel order, without the underscore (``("D", "F", "R")``).
    channel_names : sequence of str, optional
        Names of the channels (default: the suffixes).
    group_pattern : str, optional
        Regular expression searched in the stem; its ``group`` group (or first group) is the
        sample's group.
    **kwargs
        ``include_classes``, ``exclude_classes``, ``on_error``, ``check_headers``.
    """

    layout = "channelsets"

    def __init__(self, root: str | Path, *, suffixes: Sequence[str] | None = None,
                 channel_names: Sequence[str] | None = None, group_pattern: str | None = None,
                 **kwargs: Any) -> None:
        self.suffixes = tuple(suffixes) if suffixes else None
        self._names = tuple(channel_names) if channel_names else None
        self.group_pattern = re.compile(group_pattern) if group_pattern else None
        self._empty: set[str] = set()
        super().__init__(root, **kwargs)

    def _channel_names(self, n: int) -> Sequence[str]:
        names = self._names or self.suffixes or ()
        if len(names) != n:
            raise LayoutError(f"channel names {names} do not match the {n} channels of the "
                              f"images in {self.root}")
        return names

    def _known_filtered_classes(self) -> set[str]:
        return self._empty

    def _group(self, stem: str) -> str | None:
        match = self.group_pattern.search(stem) if self.group_pattern else None
        if match is None:
            return None
        if "group" in match.groupdict():
            return match["group"]
        return match.group(1) if match.groups() else match.group(0)

    def _folders(self) -> list[tuple[str | None, Path]]:
        visible = self._visible(self.root.iterdir())
        subdirs = [p for p in visible if p.is_dir()]
        if any(is_image_file(p) for p in visible) or not subdirs:
            return [(None, self.root)]
        return [(p.name, p) for p in subdirs]

    def _scan(self) -> list[Entry]:
        folders = [(label, folder, find_channel_sets(folder, self._visible(folder.iterdir())))
                   for label, folder in self._folders()]
        if self.suffixes is None:
            found = sorted({s for _, _, sets in folders for chans in sets.values() for s in chans})
            if not found:
                raise LayoutError(f"no channel files like name_D.tif found in {self.root}")
            self.suffixes = tuple(found)
        entries = []
        for label, folder, sets in folders:
            if not sets:
                self._empty.add(str(label))
                if self._wanted(label):
                    self._fail(EmptyClassError(f"class folder {folder} holds no channel files; "
                                               f"expected *_{{{','.join(self.suffixes)}}}.tif"), folder)
                continue
            for stem, chans in sorted(sets.items()):
                entry = self._entry(label, folder, stem, chans)
                if entry is not None:
                    entries.append(entry)
        return entries

    def _entry(self, label: str | None, folder: Path, stem: str,
               chans: dict[str, Path]) -> Entry | None:
        absent = [s for s in self.suffixes if s not in chans]
        if absent:
            example = next(iter(chans.values()))
            self._fail(MissingChannelError(
                f"channel set {folder / stem} lacks the files for channels {absent} "
                f"(expected {stem}_{absent[0]}{example.suffix}; channels {list(self.suffixes)})"
            ), folder / f"{stem}_{absent[0]}{example.suffix}")
            return None
        sample_id = stem if label is None else f"{label}_{stem}"
        return Entry(sample_id=sample_id, label=label, group=self._group(stem),
                     paths=tuple(str(chans[s]) for s in self.suffixes), metadata={"stem": stem})
