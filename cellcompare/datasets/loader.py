"""``open_dataset``: pick the reader for a folder, by name or by looking at it."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Literal

from .base import ImageDataset, OnError
from .channelsets import ChannelSetDataset, find_channel_sets
from .errors import LayoutError
from .folders import ClassFolderDataset
from .imageio import is_image_file
from .rxrx1 import RxRx1Dataset

__all__ = ["LAYOUTS", "READERS", "detect_layout", "open_dataset"]

Layout = Literal["auto", "rxrx1", "folders", "channelsets"]
READERS: dict[str, type[ImageDataset]] = {
    "rxrx1": RxRx1Dataset,
    "folders": ClassFolderDataset,
    "channelsets": ChannelSetDataset,
}
_MAX_CHANNELS = 12
#: Values of ``layout=`` (``auto`` detects one of the readers).
LAYOUTS: tuple[str, ...] = ("auto", *READERS)


def _looks_like_channel_sets(folders: list[Path]) -> bool:
    """At least two stems share one set of 2+ suffixes (``a_D, a_F, b_D, b_F``), few suffixes.

    ``img_001, img_002`` (one stem, numbered files) is therefore a class folder, not a set.
    """
    sets = [{s: p for s, p in chans.items() if not s.isdigit()}  # img_001: numbered, no channel
            for folder in folders for chans in find_channel_sets(folder).values()]
    sets = [chans for chans in sets if chans]
    if not sets:
        return False
    suffixes = {s for chans in sets for s in chans}
    common, count = Counter(frozenset(chans) for chans in sets).most_common(1)[0]
    return 2 <= len(common) and count >= 2 and len(suffixes) <= _MAX_CHANNELS


def detect_layout(root: str | Path) -> str:
    """Name the layout of a dataset folder.

    Parameters
    ----------
    root : str or Path
        Dataset folder.

    Returns
    -------
    str
        ``"rxrx1"`` (``metadata.csv`` + ``images/``), ``"channelsets"`` (files ``stem_X.ext``
        sharing stems, at the root or in class folders) or ``"folders"`` (class sub-folders).

    Raises
    ------
    LayoutError
        The folder matches none of them.
    """
    root = Path(root)
    if not root.is_dir():
        raise LayoutError(f"dataset folder {root} does not exist or is not a folder")
    if (root / "metadata.csv").is_file() and (root / "images").is_dir():
        return "rxrx1"
    if any(is_image_file(p) for p in root.iterdir()):
        if _looks_like_channel_sets([root]):
            return "channelsets"
        raise LayoutError(f"{root} holds loose images that are not channel sets (name_D.tif, "
                          "name_F.tif, ...); put them in class folders root/{class}/")
    subdirs = [p for p in sorted(root.iterdir()) if p.is_dir() and not p.name.startswith(".")]
    if subdirs:
        return "channelsets" if _looks_like_channel_sets(subdirs) else "folders"
    raise LayoutError(f"cannot tell the layout of {root}: no metadata.csv + images/ (rxrx1), "
                      "no class folders, no channel files")


def open_dataset(
    root: str | Path,
    layout: Layout = "auto",
    *,
    include_classes: Iterable[str] | None = None,
    exclude_classes: Iterable[str] | None = None,
    on_error: OnError = "raise",
    **options: Any,
) -> ImageDataset:
    """Open a dataset folder lazily (an index; pixels are read in ``ds[i]``).

    Parameters
    ----------
    root : str or Path
        Dataset folder.
    layout : {"auto", "rxrx1", "folders", "channelsets"}
        Reader to use; ``"auto"`` calls :func:`detect_layout`.
    include_classes, exclude_classes : iterable of str, optional
        Keep only / drop these labels.
    on_error : {"raise", "skip"}
        Raise the first DatasetError, or log it, record it in ``ds.skipped`` and go on.
    **options
        Reader-specific options: ``label_column``, ``group_by`` (rxrx1); ``group_pattern``,
        ``channel_names`` (folders, channelsets); ``suffixes`` (channelsets);
        ``check_headers`` (all).

    Returns
    -------
    ImageDataset
        A :class:`RxRx1Dataset`, :class:`ClassFolderDataset` or :class:`ChannelSetDataset`.

    Examples
    --------
    >>> ds = open_dataset("demo_data/cellpainting")            # doctest: +SKIP
    >>> ds[0].image.shape, ds.channel_names[0]                 # doctest: +SKIP
    ((6, 512, 512), 'DNA')
    """
    name = detect_layout(root) if layout == "auto" else layout
    if name not in READERS:
        raise LayoutError(f"unknown layout {layout!r}; expected one of {['auto', *READERS]}")
    return READERS[name](root, include_classes=include_classes, exclude_classes=exclude_classes,
                         on_error=on_error, **options)
