"""The lazy dataset every reader builds: an index of samples, pixels read on access."""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from cellcompare.progress import progress_bar

from .errors import ChannelShapeError, DatasetError, SkipRecord, UnlabelledError
from .imageio import (
    DEFAULT_MAX_PIXELS,
    IMAGE_SUFFIXES,
    check_pixel_limit,
    probe_image,
    read_image,
)
from .sample import Sample, to_float
from .storage import is_url

__all__ = ["UNLABELLED", "Entry", "ImageDataset", "OnError"]

logger = logging.getLogger(__name__)

OnError = Literal["raise", "skip"]
#: What a reader does with samples that have no label: keep them (prediction, extraction),
#: drop them (logged, recorded in ``skipped``) or raise :class:`UnlabelledError`.
UNLABELLED = ("keep", "drop", "raise")


@dataclass
class Entry:
    """One sample found by a reader's scan, before any pixel is read."""

    sample_id: str
    label: str | None
    group: str | None
    paths: tuple[str, ...]
    metadata: dict[str, Any] = field(default_factory=dict)


class ImageDataset:
    """Base class of the readers: a sequence of :class:`~datasets.Sample`, read lazily.

    Subclasses implement :meth:`_scan` (find the samples, no pixels) and
    :meth:`_channel_names` (name ``n`` channels). Construction builds :attr:`index` and checks
    the image headers (shape agreement between channel files); pixels are decoded only in
    ``ds[i]``.

    Parameters
    ----------
    root : str or Path
        Dataset folder.
    include_classes, exclude_classes : iterable of str, optional
        Keep only / drop these labels. Naming a class that is not present raises DatasetError.
    on_error : {"raise", "skip"}
        ``"raise"``: the first bad input raises its DatasetError subclass. ``"skip"``: the input
        is logged and recorded in :attr:`skipped` and the rest of the dataset is kept.
    check_headers : bool
        Read every file header at construction to catch unreadable files and channel shape
        mismatches early (cheap: no pixels are decoded).
    fetch : callable, optional
        Called with a sample's file paths before they are read (a remote root's
        :class:`~cellcompare.datasets.storage.StagedRoot` fetches their bytes).
    max_pixels : int or None
        Refuse a file whose header declares more pixel values (``C * H * W``) than this, before
        decoding it (:data:`~cellcompare.datasets.imageio.DEFAULT_MAX_PIXELS`; None: no limit).
    unlabelled : {"keep", "drop", "raise"}
        Samples without a label (an empty label cell) are always counted in a WARNING; then kept,
        dropped (recorded in :attr:`skipped`) or refused with :class:`UnlabelledError`.
    """

    layout: str = ""
    #: Readers that open an fsspec URL root themselves (lazily), instead of a local mirror.
    reads_urls: bool = False
    #: The URL a remote root was mirrored from (``open_dataset("s3://...")``), else None.
    source_url: str | None = None

    def __init__(
        self,
        root: str | Path,
        *,
        include_classes: Iterable[str] | None = None,
        exclude_classes: Iterable[str] | None = None,
        on_error: OnError = "raise",
        check_headers: bool = True,
        max_pixels: int | None = DEFAULT_MAX_PIXELS,
        unlabelled: str = "keep",
        fetch: Callable[[Sequence[str]], Any] | None = None,
    ) -> None:
        if on_error not in ("raise", "skip"):
            raise ValueError(f"on_error must be 'raise' or 'skip', got {on_error!r}")
        if unlabelled not in UNLABELLED:
            raise ValueError(f"unlabelled must be one of {UNLABELLED}, got {unlabelled!r}")
        self.max_pixels = max_pixels
        self.unlabelled = unlabelled
        self.fetch = fetch
        self.root = Path(root)
        if not self.root.is_dir() and not (self.reads_urls and is_url(str(root))):
            raise DatasetError(f"dataset folder {self.root} does not exist or is not a folder")
        self.on_error: OnError = on_error
        self.include_classes = None if include_classes is None else frozenset(include_classes)
        self.exclude_classes = frozenset(exclude_classes or ())
        self.skipped: list[SkipRecord] = []
        self._dtype: np.dtype | None = None
        entries = self._scan()
        entries = self._filter_unlabelled(self._filter_classes(entries))
        n_channels = self._check_headers(entries) if check_headers else None
        self._set_entries(entries)
        if n_channels is None:
            n_channels = self._default_channel_count()
        self.channel_names: tuple[str, ...] = tuple(self._channel_names(n_channels))

    # -- hooks for subclasses --------------------------------------------------------------
    def _scan(self) -> list[Entry]:
        raise NotImplementedError

    def _channel_names(self, n: int) -> Sequence[str]:
        raise NotImplementedError

    def _default_channel_count(self) -> int:
        if not self._entries:
            return 0
        return len(self._read_pixels(self._entries[0]))

    def _wanted(self, label: str | None) -> bool:
        """True when a label passes include/exclude (used by scans to skip whole folders)."""
        if label in self.exclude_classes:
            return False
        return self.include_classes is None or label in self.include_classes

    # -- error policy ----------------------------------------------------------------------
    def _fail(self, error: DatasetError, path: str | Path) -> None:
        """Raise ``error``, or record it as a skip when ``on_error="skip"``."""
        if self.on_error == "raise":
            raise error
        self._skip(path, str(error))

    def _skip(self, path: str | Path, reason: str) -> None:
        """Leave ``path`` out whatever ``on_error`` says: log it and record it in :attr:`skipped`."""
        record = SkipRecord(path=str(path), reason=reason)
        if record not in self.skipped:      # a folder listed twice is reported once
            logger.warning("skipping %s: %s", path, reason)
            self.skipped.append(record)

    def _visible(self, paths: Iterable[Path]) -> list[Path]:
        """Sorted ``paths`` without hidden names (a leading dot).

        Hidden folders and hidden image files (AppleDouble ``._x.tif``, but also ``..x`` or
        ``...``, which may well be data) are recorded in :attr:`skipped` and logged, so nothing
        that looks like data is left out silently; other hidden files (``.DS_Store``) are not data.
        """
        kept = []
        for path in sorted(paths):
            if not path.name.startswith("."):
                kept.append(path)
            elif path.is_dir() or path.suffix.lower() in IMAGE_SUFFIXES:
                self._skip(path, "hidden name (starts with '.'); rename it to include it")
        return kept

    # -- construction ----------------------------------------------------------------------
    def _filter_classes(self, entries: list[Entry]) -> list[Entry]:
        present = {e.label for e in entries}
        asked = set(self.include_classes or ()) | set(self.exclude_classes)
        missing = sorted(asked - present - self._known_filtered_classes())
        if missing:
            raise DatasetError(
                f"classes {missing} named in include_classes/exclude_classes are not in "
                f"{self.root}; present: {sorted(str(p) for p in present)}"
            )
        return [e for e in entries if self._wanted(e.label)]

    def _known_filtered_classes(self) -> set[str]:
        return set()

    def _filter_unlabelled(self, entries: list[Entry]) -> list[Entry]:
        missing = [e for e in entries if e.label is None]
        if not missing or self.unlabelled == "keep" and len(missing) == len(entries):
            return entries              # an unlabelled dataset (images to predict) is not news
        ids = ", ".join(e.sample_id for e in missing[:5]) + (", ..." if len(missing) > 5 else "")
        message = (f"{len(missing)} of {len(entries)} samples of {self.root} have no label "
                   f"(empty label cell): {ids}")
        if self.unlabelled == "raise":
            raise UnlabelledError(f"{message}; set dataset.unlabelled: drop to leave them out")
        logger.warning("%s; %s", message, "dropping them" if self.unlabelled == "drop" else "kept")
        if self.unlabelled == "keep":
            return entries
        for entry in missing:
            self.skipped.append(SkipRecord(path=entry.paths[0] if entry.paths else entry.sample_id,
                                           reason=f"sample {entry.sample_id} has no label"))
        return [e for e in entries if e.label is not None]

    def _probe_entry(self, entry: Entry) -> tuple[int, tuple[int, int], np.dtype]:
        """Total channels, common (H, W) and dtype of one entry from its headers."""
        if self.fetch is not None:
            self.fetch(entry.paths)
        probes = [(p, *probe_image(p)) for p in entry.paths]
        for p, shape, _ in probes:
            check_pixel_limit(shape, p, self.max_pixels)
        sizes = {shape[1:] for _, shape, _ in probes}
        if len(sizes) > 1:
            found = ", ".join(f"{Path(p).name}: {s[1]}x{s[2]}" for p, s, _ in probes)
            raise ChannelShapeError(
                f"channel files of sample {entry.sample_id!r} differ in size ({found}); "
                f"expected one height x width for all channels"
            )
        return sum(s[0] for _, s, _ in probes), sizes.pop(), probes[0][2]

    def _check_headers(self, entries: list[Entry]) -> int | None:
        probed: list[tuple[Entry, int]] = []
        for entry in progress_bar(entries, desc="checking headers", enabled=len(entries) >= 200, leave=False):
            try:
                channels, _, dtype = self._probe_entry(entry)
            except DatasetError as exc:
                self._fail(exc, entry.paths[0] if entry.paths else entry.sample_id)
                continue
            probed.append((entry, channels))
            self._dtype = self._dtype or dtype
        if not probed:
            entries.clear()
            return None
        n = Counter(c for _, c in probed).most_common(1)[0][0]
        kept = []
        for entry, channels in probed:
            if channels != n:
                self._fail(
                    ChannelShapeError(
                        f"sample {entry.sample_id!r} ({entry.paths[0]}) has {channels} channels; "
                        f"expected {n} like the other samples of {self.root}"
                    ),
                    entry.paths[0],
                )
                continue
            kept.append(entry)
        entries[:] = kept
        return n

    def _set_entries(self, entries: list[Entry]) -> None:
        ids = [e.sample_id for e in entries]
        dupes = [k for k, v in Counter(ids).items() if v > 1]
        if dupes:
            raise DatasetError(f"duplicate sample ids in {self.root}: {dupes[:5]}")
        self._entries = list(entries)
        rows = [{"sample_id": e.sample_id, "label": e.label, "group": e.group, **e.metadata}
                for e in entries]
        columns = ["sample_id", "label", "group"]
        self.index = pd.DataFrame(rows, columns=columns if not rows else None)
        self._position = {sid: i for i, sid in enumerate(ids)}

    # -- access ----------------------------------------------------------------------------
    def _read_pixels(self, entry: Entry) -> np.ndarray:
        if self.fetch is not None:
            self.fetch(entry.paths)
        arrays = [read_image(p, max_pixels=self.max_pixels) for p in entry.paths]
        sizes = {a.shape[1:] for a in arrays}
        if len(sizes) > 1:
            found = ", ".join(f"{Path(p).name}: {a.shape[1]}x{a.shape[2]}"
                              for p, a in zip(entry.paths, arrays))
            raise ChannelShapeError(
                f"channel files of sample {entry.sample_id!r} differ in size ({found}); "
                "expected one height x width for all channels"
            )
        if len({a.dtype for a in arrays}) > 1:
            arrays = self._same_scale(entry, arrays)
        return arrays[0] if len(arrays) == 1 else np.concatenate(arrays, axis=0)

    @staticmethod
    def _same_scale(entry: Entry, arrays: list[np.ndarray]) -> list[np.ndarray]:
        """Channel files of mixed dtypes, each scaled to [0, 1] by its own dtype (float32).

        Casting an 8-bit channel to uint16 beside a 16-bit one would leave it 257x too dark.
        """
        found = ", ".join(f"{Path(p).name}: {a.dtype}" for p, a in zip(entry.paths, arrays))
        logger.warning("channel files of sample %r mix bit depths (%s); each is scaled to [0, 1] "
                       "by its own dtype", entry.sample_id, found)
        return [to_float(a) for a in arrays]

    def __len__(self) -> int:
        return len(self._entries)

    def __getitem__(self, i: int) -> Sample:
        if not -len(self) <= i < len(self):
            raise IndexError(f"sample index {i} out of range for {len(self)} samples")
        entry = self._entries[i]
        image = self._read_pixels(entry)
        if self.channel_names and image.shape[0] != len(self.channel_names):
            raise ChannelShapeError(
                f"sample {entry.sample_id!r} ({entry.paths[0]}) has {image.shape[0]} channels; "
                f"expected {len(self.channel_names)} ({', '.join(self.channel_names)})"
            )
        metadata = {**entry.metadata, "channel_names": self.channel_names}
        return Sample(id=entry.sample_id, image=image, label=entry.label, group=entry.group,
                      metadata=metadata, paths=entry.paths)

    def __iter__(self) -> Iterator[Sample]:
        for i in range(len(self)):
            yield self[i]

    def get(self, sample_id: str) -> Sample:
        """Sample with id ``sample_id``; KeyError when absent."""
        if sample_id not in self._position:
            raise KeyError(f"no sample {sample_id!r} in {self.root}")
        return self[self._position[sample_id]]

    def paths_of(self, i: int) -> tuple[str, ...]:
        """Files of sample ``i`` without reading them."""
        return self._entries[i].paths

    def header(self, i: int) -> tuple[tuple[int, int, int], np.dtype]:
        """``(C, H, W)`` and dtype of sample ``i`` from its file headers (no pixels decoded;
        a remote root's files are not fetched)."""
        probes = [probe_image(p) for p in self._entries[i].paths]
        (_, height, width), dtype = probes[0]
        return (sum(shape[0] for shape, _ in probes), height, width), dtype

    def source(self, i: int) -> dict[str, Any]:
        """What sample ``i`` was made from: its id and each file's path, size and mtime.

        Paths under :attr:`root` are relative to it, so a dataset folder that is moved whole
        keeps its sources. Two calls give equal records exactly when the sample id and every
        file's size and modification time (ns) are unchanged; resumable jobs key their parts
        by it.

        Returns
        -------
        dict
            ``{"sample_id": str, "files": [[path, bytes, mtime_ns], ...]}``; a file that
            cannot be stat'ed has size and mtime None.
        """
        files = []
        for path in self._entries[i].paths:
            try:
                stat = os.stat(path)
                size, mtime = int(stat.st_size), int(stat.st_mtime_ns)
            except OSError:
                size = mtime = None
            try:
                shown = str(Path(path).relative_to(self.root))
            except ValueError:
                shown = str(path)
            files.append([shown, size, mtime])
        return {"sample_id": str(self._entries[i].sample_id), "files": files}

    def validate(self) -> "ImageDataset":
        """Decode every image once; drop (skip mode) or raise on the ones that fail.

        Returns
        -------
        ImageDataset
            ``self``, with failing samples removed and recorded in :attr:`skipped`.
        """
        kept = []
        for entry in progress_bar(self._entries, desc="validating", leave=False, enabled=len(self) >= 50):
            try:
                self._read_pixels(entry)
            except DatasetError as exc:
                self._fail(exc, entry.paths[0])
                continue
            kept.append(entry)
        self._set_entries(kept)
        return self

    # -- views -----------------------------------------------------------------------------
    @property
    def ids(self) -> np.ndarray:
        """Sample ids aligned with :attr:`index` (object array)."""
        return np.array([e.sample_id for e in self._entries], dtype=object)

    @property
    def labels(self) -> np.ndarray:
        """Labels aligned with :attr:`index` (object array, None when unlabelled)."""
        return np.array([e.label for e in self._entries], dtype=object)

    @property
    def groups(self) -> np.ndarray:
        """Groups aligned with :attr:`index` (object array, None when unknown)."""
        return np.array([e.group for e in self._entries], dtype=object)

    @property
    def classes(self) -> tuple[str, ...]:
        """Sorted labels present."""
        return tuple(sorted({e.label for e in self._entries if e.label is not None}))

    @property
    def dtype(self) -> np.dtype | None:
        """dtype of the first sample's header (None when headers were not checked)."""
        return self._dtype

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(root={str(self.root)!r}, n={len(self)}, "
                f"classes={len(self.classes)}, channels={self.channel_names}, "
                f"skipped={len(self.skipped)})")
