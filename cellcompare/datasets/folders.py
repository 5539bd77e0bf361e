"""Reader of class folders: ``root/{class}/*.tif|tiff|png|jpg``."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .base import Entry, ImageDataset
from .errors import EmptyClassError, LayoutError
from .imageio import is_image_file

__all__ = ["ClassFolderDataset"]


class ClassFolderDataset(ImageDataset):
    """One sample per image file; the label is the name of the folder holding it.

    8- and 16-bit, grayscale or multi-channel: a grayscale file has one channel ``Gray``; a
    multi-page or multi-sample TIFF (or an RGB PNG) has channels ``C1..Cn``. All samples must
    have the same channel count (others raise ChannelShapeError); sizes may differ.

    Parameters
    ----------
    root : str or Path
        Folder with one sub-folder per class.
    group_pattern : str, optional
        Regular expression searched in each file stem; its group named ``group`` (or its first
        group) becomes the sample's group, e.g. ``r"^(s\\d+)_"``. Without it groups are None.
    channel_names : sequence of str, optional
        Names overriding ``Gray`` / ``C1..Cn``.
    **kwargs
        ``include_classes``, ``exclude_classes``, ``on_error``, ``check_headers``.
    """

    layout = "folders"

    def __init__(self, root: str | Path, *, group_pattern: str | None = None,
                 channel_names: Sequence[str] | None = None, **kwargs: Any) -> None:
        self.group_pattern = re.compile(group_pattern) if group_pattern else None
        self._names = tuple(channel_names) if channel_names else None
        self._empty: set[str] = set()
        super().__init__(root, **kwargs)

    def _channel_names(self, n: int) -> Sequence[str]:
        if self._names is not None:
            if len(self._names) != n:
                raise LayoutError(f"channel_names {self._names} has {len(self._names)} names; "
                                  f"the images of {self.root} have {n} channels")
            return self._names
        return ("Gray",) if n == 1 else tuple(f"C{i}" for i in range(1, n + 1))

    def _known_filtered_classes(self) -> set[str]:
        return self._empty

    def _group(self, stem: str) -> str | None:
        if self.group_pattern is None:
            return None
        match = self.group_pattern.search(stem)
        if match is None:
            return None
        if "group" in match.groupdict():
            return match["group"]
        return match.group(1) if match.groups() else match.group(0)

    def _scan(self) -> list[Entry]:
        class_dirs = [p for p in self._visible(self.root.iterdir()) if p.is_dir()]
        if not class_dirs:
            raise LayoutError(f"{self.root} has no class sub-folders; expected root/{{class}}/*.tif")
        entries = []
        for folder in class_dirs:
            files = [p for p in self._visible(folder.iterdir()) if is_image_file(p)]
            if not files:
                self._empty.add(folder.name)
                if self._wanted(folder.name):
                    self._fail(EmptyClassError(
                        f"class folder {folder} holds no image file; expected *.tif, *.tiff, "
                        "*.png or *.jpg"), folder)
                continue
            for path in files:
                entries.append(Entry(sample_id=f"{folder.name}_{path.stem}", label=folder.name,
                                     group=self._group(path.stem), paths=(str(path),),
                                     metadata={"file": path.name}))
        return entries
