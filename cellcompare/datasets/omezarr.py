"""Reader of OME-Zarr (NGFF 0.4 / 0.5) high-content screening plates.

A plate is a zarr group whose ``plate`` metadata (under ``ome`` in NGFF 0.5) lists its wells;
each well group's ``well`` metadata lists its fields (images), and each field is a multiscale
image (``multiscales``, channel names in ``omero``). One sample per field:
``Metadata_Plate`` is the plate's name (else the store's name), ``Metadata_Well`` the row and
column names (``B`` + ``3`` → ``B03``), ``Metadata_Site`` the field's path in its well (``0``,
``1``, ...).
Metadata is read with ``zarr`` at construction; pixels are read per field on access, from the
chosen resolution level, so a remote plate (any fsspec URL) is never copied whole.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .base import Entry, ImageDataset
from .errors import ChannelShapeError, LayoutError, MissingChannelError
from .platemeta import PlateMap
from .storage import is_url

__all__ = ["OmeZarrDataset", "is_plate", "ngff_attrs", "well_name"]

logger = logging.getLogger(__name__)


def ngff_attrs(group: Any) -> dict[str, Any]:
    """A zarr group's NGFF metadata: its attributes, or their ``ome`` key (NGFF 0.5)."""
    attrs = dict(group.attrs)
    return dict(attrs["ome"]) if isinstance(attrs.get("ome"), Mapping) else attrs


def well_name(row: str, column: str) -> str:
    """``Metadata_Well`` of an NGFF well: row name and column name, a numeric column padded to 2.

    Examples
    --------
    >>> well_name("B", "3"), well_name("AA", "12"), well_name("C", "x")
    ('B03', 'AA12', 'Cx')
    """
    return f"{row}{int(column):02d}" if str(column).isdigit() else f"{row}{column}"


def _open(store: str, storage_options: Mapping[str, Any] | None, where: str) -> Any:
    import zarr

    try:
        kwargs = {"storage_options": dict(storage_options)} if storage_options else {}
        return zarr.open_group(store, mode="r", **kwargs)
    except (FileNotFoundError, KeyError, ValueError, OSError) as exc:
        raise LayoutError(f"{where}: not a zarr group ({type(exc).__name__}: {exc})") from None


def is_plate(path: str | Path) -> bool:
    """True when ``path`` is a local zarr group with NGFF ``plate`` metadata."""
    path = Path(path)
    if not ((path / "zarr.json").is_file() or (path / ".zattrs").is_file()):
        return False
    try:
        return "plate" in ngff_attrs(_open(str(path), None, str(path)))
    except LayoutError:
        return False


class OmeZarrDataset(ImageDataset):
    """One multi-channel sample per field of one or more OME-Zarr HCS plates.

    Parameters
    ----------
    root : str or Path
        A plate (``plate.zarr``, local or any fsspec URL such as ``s3://bucket/plate.zarr``),
        or a local folder of plates (each ``*.zarr`` with plate metadata).
    channel_names : sequence of str, optional
        Names of the channels, in order; default the labels of the first field's ``omero``
        channels (``c0, c1, ...`` without them). A count other than the images' is refused.
    level : int
        Resolution level (the index into ``multiscales[0].datasets``); 0 is full resolution.
    z : int
        Z plane read from images with a ``z`` axis (the first time point is read).
    platemap : str, optional
        CSV of each well's label (:class:`~.platemeta.PlateMap`, path relative to a local
        root's folder). Without it a well's label is its ``cellcompare.label`` attribute
        (written by ``cellcompare convert --to omezarr``), else None.
    label_column : str
        The plate map's label column.
    storage_options : mapping, optional
        fsspec options of a remote root (``anon: true``, ``endpoint_url``).
    **kwargs
        ``include_classes``, ``exclude_classes``, ``on_error``, ``check_headers``, ...
    """

    layout = "omezarr"
    reads_urls = True

    def __init__(self, root: str | Path, *, channel_names: Sequence[str] | None = None,
                 level: int = 0, z: int = 0, platemap: str | None = None,
                 label_column: str = "label", storage_options: Mapping[str, Any] | None = None,
                 **kwargs: Any) -> None:
        self.store = str(root)
        self.level, self.z = int(level), int(z)
        self.storage_options = dict(storage_options or {})
        self._names = tuple(channel_names) if channel_names else None
        self._omero: tuple[str, ...] | None = None
        base = Path(root).parent if is_url(str(root)) or is_plate(root) else Path(root)
        path = platemap and (Path(platemap) if Path(platemap).is_absolute() else base / platemap)
        self.platemap = PlateMap(path, label_column) if path else None
        self._seen_labels: set[str] = set()
        super().__init__(root, **kwargs)

    def _known_filtered_classes(self) -> set[str]:
        return self._seen_labels

    # -- scan ------------------------------------------------------------------------------
    def _plates(self) -> list[str]:
        if is_url(self.store) or is_plate(self.store):
            return [self.store]
        plates = [str(p) for p in sorted(Path(self.store).glob("*.zarr")) if is_plate(p)]
        if not plates:
            raise LayoutError(f"{self.store} is neither an OME-Zarr plate (no NGFF 'plate' "
                              f"metadata) nor a folder of *.zarr plates")
        return plates

    def _scan(self) -> list[Entry]:
        entries = []
        for store in self._plates():
            entries += self._scan_plate(store)
        return entries

    def _scan_plate(self, store: str) -> list[Entry]:
        group = _open(store, self.storage_options, store)
        plate = ngff_attrs(group).get("plate")
        if not isinstance(plate, Mapping):
            raise LayoutError(f"{store}: no NGFF 'plate' metadata (attributes "
                              f"{sorted(dict(group.attrs))}); is it an HCS plate?")
        try:
            rows = [r["name"] for r in plate["rows"]]
            columns = [c["name"] for c in plate["columns"]]
            wells = [(w["path"], rows[w["rowIndex"]], columns[w["columnIndex"]]) for w in plate["wells"]]
        except (KeyError, IndexError, TypeError) as exc:
            raise LayoutError(f"{store}: malformed NGFF plate metadata ({type(exc).__name__}: "
                              f"{exc}); expected rows, columns and wells with path, rowIndex "
                              f"and columnIndex") from None
        name = str(plate.get("name") or Path(store.rstrip("/")).name.removesuffix(".zarr"))
        entries = []
        for path, row, column in wells:
            entries += self._scan_well(group, store, name, path, well_name(row, column))
        return entries

    def _scan_well(self, plate: Any, store: str, name: str, path: str, well: str) -> list[Entry]:
        where = f"{store}/{path}"
        try:
            group = plate[path]
            images = ngff_attrs(group)["well"]["images"]
        except KeyError:
            self._fail(MissingChannelError(f"{where}: well listed by the plate has no NGFF "
                                           f"'well' metadata or is missing"), where)
            return []
        own = dict(group.attrs).get("cellcompare", {})
        label = own.get("label") if isinstance(own, Mapping) else None
        extra = {}
        if self.platemap is not None:
            hit = self.platemap.lookup(name, well)
            label, extra = (hit["label"], hit["metadata"]) if hit else (None, {})
        self._seen_labels.add(str(label))
        if not self._wanted(label):
            return []
        entries = []
        for image in images:
            site = str(image["path"])
            field = f"{where}/{site}"
            if image["path"] not in group:
                self._fail(MissingChannelError(f"{field}: field listed by the well is missing"), field)
                continue
            metadata = {"Metadata_Plate": name, "Metadata_Well": well, "Metadata_Site": site,
                        **extra}
            entries.append(Entry(sample_id=f"{name}_{well}_{site}", label=label, group=name,
                                 paths=(field,), metadata=metadata))
        return entries

    # -- pixels ----------------------------------------------------------------------------
    def _field(self, path: str) -> tuple[Any, list[str]]:
        """The field's array at :attr:`level` and its axis names."""
        group = _open(path, self.storage_options, path)
        try:
            scales = ngff_attrs(group)["multiscales"][0]
            datasets = scales["datasets"]
            axes = [a["name"] if isinstance(a, Mapping) else str(a) for a in scales.get(
                "axes", ["t", "c", "z", "y", "x"][-group[datasets[0]["path"]].ndim:])]
        except (KeyError, IndexError, TypeError) as exc:
            raise LayoutError(f"{path}: malformed NGFF multiscales metadata "
                              f"({type(exc).__name__}: {exc})") from None
        if not 0 <= self.level < len(datasets):
            raise LayoutError(f"{path}: resolution level {self.level} requested, the image has "
                              f"levels 0..{len(datasets) - 1}")
        if self._omero is None:
            self._omero = tuple(str(c.get("label") or f"c{i}") for i, c in
                                enumerate(ngff_attrs(group).get("omero", {}).get("channels", [])))
        return group[datasets[self.level]["path"]], axes

    def _selection(self, array: Any, axes: list[str], path: str) -> tuple:
        picks = []
        for axis, size in zip(axes, array.shape):
            if axis == "t":
                picks.append(0)
            elif axis == "z":
                if not 0 <= self.z < size:
                    raise LayoutError(f"{path}: z plane {self.z} requested, the image has {size}")
                picks.append(self.z)
            else:
                picks.append(slice(None))
        return tuple(picks)

    def _probe_entry(self, entry: Entry) -> tuple[int, tuple[int, int], np.dtype]:
        array, axes = self._field(entry.paths[0])
        shape = dict(zip(axes, array.shape))
        return shape.get("c", 1), (shape["y"], shape["x"]), np.dtype(array.dtype)

    def header(self, i: int) -> tuple[tuple[int, int, int], np.dtype]:
        """``(C, H, W)`` and dtype of field ``i`` at :attr:`level`, from the zarr metadata."""
        channels, (height, width), dtype = self._probe_entry(self._entries[i])
        return (channels, height, width), dtype

    def _read_pixels(self, entry: Entry) -> np.ndarray:
        path = entry.paths[0]
        array, axes = self._field(path)
        pixels = np.asarray(array[self._selection(array, axes, path)])
        kept = [a for a in axes if a not in ("t", "z")]
        if "c" not in kept:
            return pixels[np.newaxis]
        return np.moveaxis(pixels, kept.index("c"), 0)

    def source(self, i: int) -> dict[str, Any]:
        """Sample id and field path (zarr chunks have no single size and mtime)."""
        return {"sample_id": str(self._entries[i].sample_id),
                "files": [[self._entries[i].paths[0], None, None]]}

    def _channel_names(self, n: int) -> Sequence[str]:
        names = self._names or self._omero or tuple(f"c{i}" for i in range(n))
        if len(names) != n:
            given = "channel_names" if self._names else "omero channels"
            raise ChannelShapeError(f"{self.store}: {given} {list(names)} do not match the {n} "
                                    f"channels of its images")
        return names

