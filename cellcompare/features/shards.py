"""Feature shards: many images per Parquet file, assembled from per-image staged files.

A one-row Parquet file per image spends megabytes of footer on a few kilobytes of values
(3,800 columns x ~120 bytes of column metadata). The batch job therefore writes:

* ``staged/{digest}.{level}.arrow`` per finished image (Arrow IPC, no per-column footer),
  named by a digest of the image's *source record* (sample id, file sizes and mtimes), so a
  staged image never needs renaming when positions shift; workers (joblib or Dask) write these;
* ``{cells,image}/shard-{first:06d}-{last:06d}.parquet`` per range of ``shard_images``
  ImageNumbers, written by the main process once every image of the range is finished (or
  has failed), from the staged files, which are then deleted. Row groups hold about
  :data:`ROW_GROUP_BYTES`; statistics and dictionaries are written for the ``Metadata_*``
  columns only (what filters read), and no Arrow schema copy, so the footer is ~120 bytes per
  column and row group.

Each shard's footer records its *entries* (ImageNumber, source key, rows) under
:data:`ENTRIES_KEY`; resume checks each shard against them (:func:`check_shard`) and redoes a
damaged one. A kill loses at most the images in flight: staged files survive, and a rerun
assembles the shard they belong to; assembly is deterministic, so the shard is byte-identical
to an uninterrupted run's.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.ipc as ipc
import pyarrow.parquet as pq

from cellcompare.atomic import atomic_path

log = logging.getLogger(__name__)

ENTRIES_KEY = "cellcompare.entries"
SOURCE_KEY = b"cellcompare.source"
IMAGE_KEY = "Metadata_ImageNumber"
LEVELS = ("cells", "image")          # cells first: the image shard marks its images as done
STAGE = "staged"
#: Images per shard: ~260 per file at RxRx1 (125k sites -> ~490 files per level).
SHARD_IMAGES = 256
#: Target bytes of one row group (about 4,400 cells at 3,800 float32 columns).
ROW_GROUP_BYTES = 64 << 20
DTYPES = {"float32": pa.float32(), "float64": pa.float64()}


class DiskFullError(OSError):
    """The output folder's disk has no room for a staged image or a shard."""


@dataclass(frozen=True)
class Entry:
    """One image of a shard: its ImageNumber, source key and row count at ``level``."""

    number: int
    key: str
    rows: int


def shard_name(first: int, size: int) -> str:
    """File name of the shard whose range starts at ImageNumber ``first`` (1-based)."""
    return f"shard-{first:06d}-{first + size - 1:06d}.parquet"


def shard_first(number: int, size: int) -> int:
    """First ImageNumber of the shard range holding ``number``."""
    return (number - 1) // size * size + 1


def stage_path(out: Path, key: str, level: str) -> Path:
    """``out/staged/{digest of key}.{level}.arrow``."""
    digest = hashlib.sha256(key.encode()).hexdigest()[:24]
    return out / STAGE / f"{digest}.{level}.arrow"


def storage_table(table: pa.Table, dtype: str) -> pa.Table:
    """``table`` with its floating feature columns cast to ``dtype`` and no pandas metadata.

    ``Metadata_*`` columns keep their types (positions stay float64).

    Examples
    --------
    >>> import pyarrow as pa
    >>> t = pa.table({"Metadata_Location_Center_X": [1.5], "Cells_AreaShape_Area": [10.0]})
    >>> [str(f.type) for f in storage_table(t, "float32").schema]
    ['double', 'float']
    """
    target = DTYPES[dtype]
    fields = [pa.field(f.name, target) if pa.types.is_floating(f.type)
              and not f.name.startswith("Metadata_") else f for f in table.schema]
    return table.cast(pa.schema(fields)).replace_schema_metadata(None)


@contextmanager
def _room(folder: Path, needed: int) -> Iterator[None]:
    """Turn ENOSPC into a :class:`DiskFullError` naming ``folder`` and the bytes needed."""
    try:
        yield
    except OSError as exc:
        if exc.errno != errno.ENOSPC:
            raise
        free = shutil.disk_usage(folder).free
        raise DiskFullError(errno.ENOSPC, f"no space left in {folder}: about {needed:,} bytes "
                            f"needed, {free:,} free; free some space and rerun (finished "
                            f"images are kept)") from exc


def stage(table: pa.Table, out: Path, level: str, key: str) -> None:
    """Write one image's ``table`` atomically to its staged file, ``key`` in its metadata."""
    path = stage_path(out, key, level)
    with _room(path.parent if path.parent.exists() else out, table.nbytes), atomic_path(path) as tmp:
        schema = table.schema.with_metadata({SOURCE_KEY: key.encode()})
        with ipc.new_file(tmp, schema) as writer:
            writer.write_table(table.replace_schema_metadata(schema.metadata))


def read_staged(path: Path) -> tuple[str, pa.Table]:
    """The source key and table of a staged file (memory-mapped).

    The map is not closed here: the table's buffers point into it, and it is released with them.
    """
    table = ipc.open_file(pa.memory_map(str(path))).read_all()
    return table.schema.metadata[SOURCE_KEY].decode(), table.replace_schema_metadata(None)


def staged_keys(out: Path) -> dict[str, Path]:
    """Source key -> staged image file, for images whose both levels are staged.

    An image file without its cells file (a job killed between the two) is not finished.
    """
    found = {}
    for path in sorted((out / STAGE).glob("*.image.arrow")):
        if path.with_name(path.name.replace(".image.", ".cells.")).exists():
            found[read_staged(path)[0]] = path
    return found


def entries(path: Path) -> list[Entry]:
    """The entries a shard recorded in its footer (raises when the footer is unreadable)."""
    meta = pq.read_metadata(path).metadata or {}
    raw = meta.get(ENTRIES_KEY.encode())
    if raw is None:
        raise ValueError(f"{path} has no {ENTRIES_KEY} record")
    return [Entry(*item) for item in json.loads(raw)]


def check_shard(image: Path) -> list[Entry]:
    """Entries of the shard ``image`` and its ``cells`` twin, after checking both footers.

    Raises
    ------
    ValueError
        A footer is unreadable, the two files record other images, or a file's row count
        differs from the rows it recorded.
    """
    cells = image.parent.parent / "cells" / image.name
    if not cells.exists():
        raise ValueError(f"{cells} is missing")
    found = {}
    for level, path in (("image", image), ("cells", cells)):
        try:
            recorded, rows = entries(path), pq.read_metadata(path).num_rows
        except (OSError, pa.ArrowException) as exc:
            raise ValueError(f"{path} is unreadable ({exc})") from exc
        if sum(e.rows for e in recorded) != rows:
            raise ValueError(f"{path} holds {rows} rows, its record says "
                             f"{sum(e.rows for e in recorded)}")
        found[level] = recorded
    if [(e.number, e.key) for e in found["image"]] != [(e.number, e.key) for e in found["cells"]]:
        raise ValueError(f"{image} and {cells} record other images")
    return found["image"]


def _aligned(table: pa.Table, schema: pa.Schema) -> pa.Table:
    # once: ``column_names`` builds a list of every field, so asking it per column made aligning
    # a 3,800-column image quadratic (about 10 s of the main process per 512² site)
    present = set(table.column_names)
    columns = [table.column(f.name).cast(f.type) if f.name in present
               else pa.nulls(table.num_rows, f.type) for f in schema]
    return pa.Table.from_arrays(columns, schema=schema)


def _groups(tables: Iterable[pa.Table], schema: pa.Schema) -> Iterator[pa.Table]:
    """Concatenate consecutive tables into row groups of about :data:`ROW_GROUP_BYTES`."""
    pending, size = [], 0
    for table in tables:
        pending.append(_aligned(table, schema))
        size += pending[-1].nbytes
        if size >= ROW_GROUP_BYTES:
            yield pa.concat_tables(pending)
            pending, size = [], 0
    if pending:
        yield pa.concat_tables(pending)


def parquet_options(schema: pa.Schema) -> dict:
    """Writer options of feature files: statistics and dictionaries for ``Metadata_*`` only.

    Dictionary pages on float features cost about a third more bytes than the values; no
    Arrow schema copy in the footer (it is rebuilt from the Parquet schema on reading).

    Examples
    --------
    >>> import pyarrow as pa
    >>> options = parquet_options(pa.schema([("Metadata_Well", pa.string()), ("Cells_X", pa.float32())]))
    >>> options["write_statistics"], options["use_dictionary"]
    (['Metadata_Well'], ['Metadata_Well'])
    """
    metadata = [n for n in schema.names if n.startswith("Metadata_")]
    strings = [f.name for f in schema if f.name.startswith("Metadata_") and
               (pa.types.is_string(f.type) or pa.types.is_large_string(f.type))]
    return {"store_schema": False, "write_statistics": metadata, "use_dictionary": strings,
            "compression": "snappy"}


def write_shard(path: Path, tables: list[tuple[int, str, pa.Table]], schema: pa.Schema) -> None:
    """Write ``(number, key, table)`` in order as one shard, atomically, entries in its footer."""
    record = [[number, key, table.num_rows] for number, key, table in tables]
    needed = sum(t.nbytes for _, _, t in tables)
    with _room(path.parent, needed), atomic_path(path) as tmp:
        writer = pq.ParquetWriter(tmp, schema, **parquet_options(schema))
        with writer:
            for group in _groups((t for _, _, t in tables), schema):
                writer.write_table(group, row_group_size=group.num_rows)
            writer.add_key_value_metadata({ENTRIES_KEY: json.dumps(record, separators=(",", ":"))})


def _with_number(table: pa.Table, number: int) -> pa.Table:
    at = table.schema.get_field_index(IMAGE_KEY)
    field = table.schema.field(at)
    return table.set_column(at, field, pa.array([number] * table.num_rows, type=field.type))


def assemble(out: Path, first: int, size: int, members: dict[int, str]) -> int:
    """Write the shard of range ``first`` from the staged images ``members`` (number -> key).

    Staged files of those images are deleted once both levels are written (cells first).
    Returns the number of images in the shard.
    """
    staged = {number: key for number, key in sorted(members.items())
              if stage_path(out, key, "image").exists()}
    if not staged:
        return 0
    for level in LEVELS:
        tables = [(n, k, _with_number(read_staged(stage_path(out, k, level))[1], n))
                  for n, k in staged.items()]
        schema = pa.unify_schemas([t.schema for _, _, t in tables], promote_options="permissive")
        write_shard(out / level / shard_name(first, size), tables, schema)
    for key in staged.values():
        for level in LEVELS[::-1]:
            stage_path(out, key, level).unlink(missing_ok=True)
    return len(staged)


def _per_image(path: Path) -> Iterator[tuple[Entry, pa.Table]]:
    """Each recorded image of a shard file with its rows, read one row group at a time."""
    file = pq.ParquetFile(path)
    empty = file.schema_arrow.empty_table()
    groups = (file.read_row_group(g) for g in range(file.num_row_groups))
    table, start = empty, 0
    for entry in entries(path):
        pieces, need = [], entry.rows
        while need:
            if start == table.num_rows:
                table, start = next(groups), 0
            take = min(need, table.num_rows - start)
            pieces.append(table.slice(start, take))
            start, need = start + take, need - take
        yield entry, pa.concat_tables(pieces) if pieces else empty


def unpack(out: Path, image: Path, keep: set[str]) -> int:
    """Stage the images of shard ``image`` (and its cells twin) whose keys are in ``keep``.

    Then delete the shard (image file first: its images are no longer done). Returns how
    many images were staged. Used when a shard must change (images moved, changed or left,
    or a failed image of its range now succeeds). Memory: one row group and one image.
    """
    recorded = check_shard(image)
    for level in LEVELS:
        for entry, rows in _per_image(image.parent.parent / level / image.name):
            if entry.key in keep:
                stage(rows.replace_schema_metadata(None), out, level, entry.key)
    for level in LEVELS[::-1]:
        (image.parent.parent / level / image.name).unlink()
    return sum(e.key in keep for e in recorded)


def shard_files(out: Path) -> list[Path]:
    """The image shards of ``out``, sorted."""
    return sorted((out / "image").glob("shard-*.parquet"))


def count_done(out: Path) -> int:
    """Images recorded in the readable image shards of ``out`` (0 when there are none)."""
    done = 0
    for path in shard_files(out):
        try:
            done += len(entries(path))
        except (OSError, ValueError, pa.ArrowException):
            continue
    return done
