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
from .loaddata import LoadDataDataset
from .omezarr import OmeZarrDataset, is_plate
from .pattern import PatternDataset, detect_preset
from .rxrx1 import RxRx1Dataset
from .storage import StagedRoot, is_url

__all__ = ["LAYOUTS", "READERS", "detect_layout", "open_dataset"]

Layout = Literal["auto", "rxrx1", "folders", "channelsets", "pattern", "loaddata", "omezarr"]
READERS: dict[str, type[ImageDataset]] = {
    "rxrx1": RxRx1Dataset,
    "folders": ClassFolderDataset,
    "channelsets": ChannelSetDataset,
    "pattern": PatternDataset,
    "loaddata": LoadDataDataset,
    "omezarr": OmeZarrDataset,
}
#: Options of a remote root (``s3://...``), passed to :class:`~.storage.StagedRoot`.
STORAGE_OPTIONS = ("storage_options", "cache_dir", "max_concurrency")
#: File name that makes ``auto`` choose the LoadData layout.
LOADDATA_CSV = "load_data.csv"
_MAX_CHANNELS = 12
#: Values of ``layout=`` (``auto`` detects one of the readers).
LAYOUTS: tuple[str, ...] = ("auto", *READERS)


def _looks_like_channel_sets(folders: list[Path], *, one: bool = False) -> bool:
    """At least two stems share one set of 2+ suffixes (``a_D, a_F, b_D, b_F``), few suffixes.

    ``img_001, img_002`` (one stem, numbered files) is therefore a class folder, not a set.
    With ``one`` (loose images at the root), a single stem whose 2+ named suffixes are every
    image there is one channel set too: one site of a handful-of-images cell task
    (``01_POS002_D.TIF, 01_POS002_F.TIF, 01_POS002_R.TIF``).
    """
    sets = [{s: p for s, p in chans.items() if not s.isdigit()}  # img_001: numbered, no channel
            for folder in folders for chans in find_channel_sets(folder).values()]
    sets = [chans for chans in sets if chans]
    if not sets:
        return False
    suffixes = {s for chans in sets for s in chans}
    common, count = Counter(frozenset(chans) for chans in sets).most_common(1)[0]
    if one and len(sets) == 1:
        files = [p for folder in folders for p in folder.iterdir() if is_image_file(p)]
        count = 2 if len(files) == len(common) else count  # the set is every loose image
    return 2 <= len(common) and count >= 2 and len(suffixes) <= _MAX_CHANNELS


def _preset_of(root: Path) -> str | None:
    """The file-name preset (``pattern`` layout) the images at ``root`` all follow, if any."""
    files = [p for p in root.iterdir() if is_image_file(p)]
    return detect_preset(files) if files else None


def detect_layout(root: str | Path) -> str:
    """Name the layout of a dataset folder.

    Parameters
    ----------
    root : str or Path
        Dataset folder.

    Returns
    -------
    str
        ``"rxrx1"`` (``metadata.csv`` + ``images/``), ``"omezarr"`` (an OME-Zarr HCS plate or a
        folder of ``*.zarr`` plates), ``"loaddata"`` (``load_data.csv``, or
        ``root`` is a ``.csv`` file),
        ``"pattern"`` (loose images all named by one of the ``pattern.PRESETS``, such as
        CellProfiler's ``{plate}_{well}f{site}d{channel}``), ``"channelsets"`` (files ``stem_X.ext``
        sharing stems, at the root or in class folders) or ``"folders"`` (class sub-folders).

    Raises
    ------
    LayoutError
        The folder matches none of them.
    """
    root = Path(root)
    if root.is_file() and root.suffix.lower() == ".csv":
        return "loaddata"               # the LoadData CSV itself, as CellProfiler's -d
    if not root.is_dir():
        raise LayoutError(f"dataset folder {root} does not exist or is not a folder (or a "
                          f"LoadData .csv)")
    if (root / "metadata.csv").is_file() and (root / "images").is_dir():
        return "rxrx1"
    if is_plate(root) or any(is_plate(p) for p in root.glob("*.zarr")):
        return "omezarr"
    if (root / LOADDATA_CSV).is_file():
        return "loaddata"
    if _preset_of(root):
        return "pattern"
    if any(is_image_file(p) for p in root.iterdir()):
        if _looks_like_channel_sets([root], one=True):
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
        Dataset folder, a LoadData ``.csv`` file (its folder is the root), or an fsspec URL (``s3://bucket/prefix``): listed once and mirrored
        locally, each image fetched on first read (``storage.StagedRoot``; header checks are
        off unless ``check_headers=True``).
    layout : {"auto", "rxrx1", "folders", "channelsets", "pattern", "loaddata", "omezarr"}
        Reader to use; ``"auto"`` calls :func:`detect_layout`.
    include_classes, exclude_classes : iterable of str, optional
        Keep only / drop these labels.
    on_error : {"raise", "skip"}
        Raise the first DatasetError, or log it, record it in ``ds.skipped`` and go on.
    **options
        Reader-specific options: ``label_column``, ``group_by`` (rxrx1); ``group_pattern``,
        ``channel_names`` (folders, channelsets); ``suffixes`` (channelsets); ``pattern``,
        ``channel_names``, ``group_by`` (pattern); ``csv``, ``label_column``, ``group_column``,
        ``channels``, ``channel_names`` (loaddata); ``channel_names``, ``level``, ``z``,
        ``platemap`` (omezarr: read lazily from a URL, never mirrored); ``storage_options``, ``cache_dir``,
        ``max_concurrency`` (remote roots);
        ``check_headers`` (all).

    Returns
    -------
    ImageDataset
        A :class:`RxRx1Dataset`, :class:`ClassFolderDataset` or :class:`ChannelSetDataset`.

    Examples
    --------
    Class folders of single-channel PNGs, written to a temporary folder:

    >>> import tempfile
    >>> from pathlib import Path
    >>> import numpy as np
    >>> from PIL import Image
    >>> from cellcompare.datasets import open_dataset
    >>> root = Path(tempfile.mkdtemp())
    >>> for label in ("control", "treated"):
    ...     (root / label).mkdir()
    ...     for k in range(2):
    ...         Image.fromarray(np.full((8, 10), 100 * k, np.uint8)).save(root / label / f"{k}.png")
    >>> ds = open_dataset(root)
    >>> type(ds).__name__, len(ds), ds.channel_names, ds.labels.tolist()
    ('ClassFolderDataset', 4, ('Gray',), ['control', 'control', 'treated', 'treated'])
    >>> sample = ds[1]
    >>> sample.label, sample.image.shape, sample.image.max()
    ('control', (1, 8, 10), np.uint8(100))
    """
    staged = None
    if is_url(root) and layout == "auto" and str(root).rstrip("/").endswith(".zarr"):
        layout = "omezarr"
    if is_url(root) and not READERS.get(layout, ImageDataset).reads_urls:
        # s3://bucket/prefix: a local mirror whose images are fetched on read
        staged = StagedRoot(str(root), **{k: options.pop(k) for k in STORAGE_OPTIONS if k in options})
        root = staged.sync().local
        options.setdefault("check_headers", False)  # headers would fetch every image now
        options["fetch"] = staged
    name = detect_layout(root) if layout == "auto" else layout
    if layout == "auto" and name == "pattern" and "pattern" not in options:
        options["pattern"] = _preset_of(Path(root))
    if name not in READERS:
        raise LayoutError(f"unknown layout {layout!r}; expected one of {['auto', *READERS]}")
    dataset = READERS[name](root, include_classes=include_classes, exclude_classes=exclude_classes,
                            on_error=on_error, **options)
    dataset.source_url = staged.url if staged is not None else None
    return dataset
