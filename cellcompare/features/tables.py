"""Feature tables larger than memory: a partitioned Parquet dataset, streamed, and sampled.

The batch job writes shards of a few hundred images each (resumable, see :mod:`.batch` and
:mod:`.shards`); any Parquet files under ``cells/`` and ``image/`` are read as parts. At
RxRx1's scale (125k sites, ~12 M cells x 3,600 features, ~170 GB as float32) the cell table
does not fit in memory. This module reads the parts (or a compacted copy) as one
``pyarrow.dataset`` and never materialises the cell table:

* :func:`compact` rewrites the parts as a Hive-partitioned dataset (``Metadata_Plate=.../``
  or ``Metadata_Chunk=.../``, a chunk being ``chunk_images`` consecutive ImageNumbers),
  streaming record batches, so memory is one batch;
* :func:`open_table` opens the compacted dataset when present and current, else the
  per-image parts;
* :func:`read_dataset` reads a whole dataset (or some of its columns) into one DataFrame;
* :func:`stream_image_means` aggregates cells to per-image means batch by batch (memory:
  the per-image result plus one batch);
* :func:`sample_cells` keeps at most ``n`` cells per image, chosen by a seeded hash of
  (image, object) so the choice does not depend on batch order or partitioning (memory: the
  kept rows, one batch, and 24 bytes of keys per cell).

Parts written one per image (older folders, hand-made ones) cost a footer per file (about
0.7 KB per column, so ~2 MB per image at 3,000 features); compact those.
"""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from cellcompare.progress import progress_bar

from .shards import parquet_options

__all__ = [
    "PARTITIONS",
    "TableLayoutError",
    "compact",
    "compacted_path",
    "iter_batches",
    "open_table",
    "read_dataset",
    "read_part",
    "sample_cells",
    "stream_image_means",
]

log = logging.getLogger(__name__)
IMAGE_KEY = "Metadata_ImageNumber"
OBJECT_KEY = "Metadata_ObjectNumber"
SAMPLE_KEY = "Metadata_sample_id"
PARTITIONS = ("plate", "chunk")
CHUNK_KEY = "Metadata_Chunk"
_FOLDERS = {"cell": "cells", "image": "image"}
#: Parts probed for the schema of a per-image table (see :func:`_parts_dataset`).
_SCHEMA_PROBE = 256
#: Decode one batch ahead, not pyarrow's 16 batches of 4 files: sampling 5 of 20 cells per image
#: at 100k images x 500 columns peaked 1.7 GB above imports instead of 2.1-2.4 GB (measured with
#: benchmarks/table_memory_bench.py's data).
_READAHEAD = {"batch_readahead": 1, "fragment_readahead": 1}


class TableLayoutError(ValueError):
    """A feature folder or dataset lacks what the call needs (parts, a column, a level)."""


def _parts(out_dir: Path, level: str) -> list[Path]:
    if level not in _FOLDERS:
        raise TableLayoutError(f"level must be 'cell' or 'image', found {level!r}")
    folder = out_dir / _FOLDERS[level]
    parts = sorted(p for p in folder.glob("*.parquet") if not p.name.startswith("."))
    if not parts:
        raise TableLayoutError(f"no Parquet parts under {folder}; run `cellcompare extract` first")
    for path in parts:
        check_readable(path)
    return parts


def check_readable(path: Path) -> None:
    """Raise :class:`TableLayoutError` naming ``path`` and the fix when its footer is unreadable."""
    try:
        pq.read_metadata(path)
    except (OSError, pa.ArrowException) as exc:
        raise TableLayoutError(
            f"{path} is damaged ({exc}); run `cellcompare extract` again into "
            f"{path.parent.parent} to redo it (a damaged shard is detected and extracted again)"
        ) from exc


def _parts_dataset(out_dir: Path, level: str) -> ds.Dataset:
    """The per-image parts as one dataset, with the schema of the first part holding features.

    ``pyarrow.dataset`` takes the schema of the first file; an image without cells writes a
    part without feature columns (its image row too), which would hide every feature of
    the other parts.
    """
    parts = _parts(out_dir, level)
    schema = None
    for path in parts[:_SCHEMA_PROBE]:
        meta = pq.ParquetFile(path)
        names = meta.schema_arrow.names
        if meta.metadata.num_rows and any(not n.startswith("Metadata_") for n in names):
            schema = meta.schema_arrow
            break
    return ds.dataset([str(p) for p in parts], schema=schema, format="parquet")


def compacted_path(out_dir: str | Path, level: str = "cell") -> Path | None:
    """``out_dir/dataset/{level}`` when it exists and is current, else None.

    A compacted dataset older than its parts folder (an extraction resumed after
    :func:`compact`) is stale: it is not used, and a warning says to compact again.
    """
    out_dir = Path(out_dir)
    if level not in _FOLDERS:
        raise TableLayoutError(f"level must be 'cell' or 'image', found {level!r}")
    compacted = out_dir / "dataset" / level
    if not compacted.is_dir():
        return None
    parts = out_dir / _FOLDERS[level]
    if parts.is_dir() and parts.stat().st_mtime > compacted.stat().st_mtime:
        log.warning("%s is older than the parts in %s (extraction ran after compact); reading "
                    "the parts; run compact again", compacted, parts)
        return None
    return compacted


def compact(out_dir: str | Path, level: str = "cell", *, partition: str = "plate",
            chunk_images: int = 1000, batch_rows: int = 65536) -> Path:
    """Rewrite the per-image parts of ``out_dir`` as one partitioned Parquet dataset.

    Parameters
    ----------
    out_dir : str or Path
        Output folder of ``features.run_extraction``.
    level : {"cell", "image"}
        Which table.
    partition : {"plate", "chunk"}
        ``plate``: one folder per ``Metadata_Plate``; ``chunk``: per ``chunk_images``
        consecutive ImageNumbers (``Metadata_Chunk``), for layouts without plates.
    chunk_images : int
        Images per chunk.
    batch_rows : int
        Rows read and written at a time (the memory of the rewrite).

    Returns
    -------
    Path
        ``out_dir/dataset/{level}``, replaced atomically (a rename) when it existed.
    """
    out_dir = Path(out_dir)
    if partition not in PARTITIONS:
        raise TableLayoutError(f"partition must be one of {PARTITIONS}, found {partition!r}")
    source = _parts_dataset(out_dir, level)
    names = source.schema.names
    columns = {n: ds.field(n) for n in names}
    if partition == "plate":
        if "Metadata_Plate" not in names:
            raise TableLayoutError(f"{out_dir}: the {level} table has no Metadata_Plate column; "
                                   f"use partition='chunk'")
        key = "Metadata_Plate"
        columns[key] = ds.field(key).cast(pa.string())
    else:
        key = CHUNK_KEY
        columns[key] = pc.divide(ds.field(IMAGE_KEY).cast(pa.int64()), pa.scalar(int(chunk_images)))
    target = out_dir / "dataset" / level
    tmp = target.with_name(f".{level}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    scanner = source.scanner(columns=columns, batch_size=batch_rows)
    options = ds.ParquetFileFormat().make_write_options(**parquet_options(scanner.projected_schema))
    ds.write_dataset(scanner, tmp, format="parquet", file_options=options,
                     partitioning=ds.partitioning(pa.schema([(key, scanner.projected_schema.field(key).type)]),
                                                  flavor="hive"),
                     max_rows_per_group=batch_rows, existing_data_behavior="error",
                     preserve_order=True)  # rows stay in ImageNumber order: reads need no sort
    if target.exists():
        shutil.rmtree(target)
    tmp.rename(target)
    log.info("compacted %s %s table into %s (partitioned by %s)", out_dir, level, target, key)
    return target


def open_table(out_dir: str | Path, level: str = "cell") -> ds.Dataset:
    """The ``level`` table of ``out_dir`` as a ``pyarrow.dataset`` (compacted copy if current)."""
    out_dir = Path(out_dir)
    compacted = compacted_path(out_dir, level)
    if compacted is not None:
        # files in natural order (Chunk=2 before Chunk=10), so a chunked table reads sorted
        files = sorted((str(p) for p in compacted.rglob("*.parquet") if not p.name.startswith(".")),
                       key=_natural)
        return ds.dataset(files, format="parquet", partitioning="hive",
                          partition_base_dir=str(compacted))
    return _parts_dataset(out_dir, level)


def _natural(text: str) -> list:
    """Sort key reading the digit runs of ``text`` as numbers."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def read_part(path: str | Path, columns: list[str] | None = None) -> pd.DataFrame:
    """One Parquet part, or those of ``columns`` it has (an image without cells has no features)."""
    check_readable(Path(path))
    if columns is None:
        return pd.read_parquet(path)
    part = pq.ParquetFile(path)
    have = set(part.schema_arrow.names)
    return part.read(columns=[c for c in dict.fromkeys(columns) if c in have]).to_pandas()


def _sorted_frame(table: pa.Table, keys: list[str]) -> pd.DataFrame:
    """``table`` sorted by ``keys`` as a DataFrame, converted column by column.

    A table read in order (parts, or a dataset of :func:`compact`) is not copied to sort it;
    ``self_destruct`` frees each Arrow column once converted, so the peak is about one copy of
    the table instead of two. The frame keeps one block per column.
    """
    if table.num_rows > 1:
        order = pc.sort_indices(table, sort_keys=[(k, "ascending") for k in keys])
        if not np.array_equal(order.to_numpy(), np.arange(table.num_rows)):
            table = table.take(order)
    frame = table.to_pandas(split_blocks=True, self_destruct=True)
    del table
    return frame


def read_dataset(table: ds.Dataset, columns: list[str] | None = None) -> pd.DataFrame:
    """A whole feature dataset (or ``columns`` of it) as one DataFrame sorted by its keys.

    Parameters
    ----------
    table : pyarrow.dataset.Dataset
        A table of :func:`open_table`.
    columns : list of str, optional
        Columns to read (``Metadata_ImageNumber``, and ``Metadata_ObjectNumber`` in a cell
        table, are always read); all by default.

    Returns
    -------
    pd.DataFrame
        Rows sorted by ImageNumber (and ObjectNumber); ``Metadata_Chunk``, a partition key of
        :func:`compact` that the parts do not have, is left out.
    """
    names = table.schema.names
    keys = [k for k in (IMAGE_KEY, OBJECT_KEY) if k in names]
    _require(table, keys[:1], "reading a table")
    if columns is None:
        wanted = [n for n in names if n != CHUNK_KEY]
    else:
        wanted = list(dict.fromkeys([*keys, *columns]))
        _require(table, wanted, "reading a table")
    return _sorted_frame(table.to_table(columns=wanted, **_READAHEAD), keys).reset_index(drop=True)


def iter_batches(table: ds.Dataset, columns: list[str] | None = None,
                 batch_rows: int = 65536) -> Iterator[pd.DataFrame]:
    """Yield ``table`` as DataFrames of at most ``batch_rows`` rows (one batch, one read ahead)."""
    for batch in table.to_batches(columns=columns, batch_size=batch_rows, **_READAHEAD):
        if batch.num_rows:
            yield batch.to_pandas()


def _require(table: ds.Dataset, names: list[str], what: str) -> None:
    missing = [n for n in names if n not in table.schema.names]
    if missing:
        raise TableLayoutError(f"{what} needs columns {missing}, absent from the table "
                               f"(columns start {table.schema.names[:5]})")


def stream_image_means(table: ds.Dataset, *, batch_rows: int = 65536,
                       progress: bool = False) -> pd.DataFrame:
    """Per-image mean of every numeric feature of a cell table, read batch by batch.

    Returns
    -------
    pd.DataFrame
        One row per ``Metadata_ImageNumber`` (sorted): the first value of each image-level
        ``Metadata_*`` column, ``Metadata_Object_Count`` and ``{feature}__mean`` (NaN ignored;
        an all-NaN feature of an image stays NaN), as ``extract.aggregate`` names them. Medians
        do not stream; the batch job already writes them per image.
    """
    _require(table, [IMAGE_KEY], "per-image aggregation")
    meta = [n for n in table.schema.names if n.startswith("Metadata_") and n != OBJECT_KEY
            and not n.startswith("Metadata_Location_")]  # per-cell positions mean nothing per image
    sums, counts, firsts, objects = [], [], [], []
    batches = iter_batches(table, batch_rows=batch_rows)
    for frame in progress_bar(batches, enabled=progress, desc="aggregate", unit="batch"):
        features = [c for c in frame.columns if not c.startswith("Metadata_")
                    and pd.api.types.is_numeric_dtype(frame[c])]
        grouped = frame.groupby(IMAGE_KEY, sort=False)
        sums.append(grouped[features].sum(min_count=1))
        counts.append(grouped[features].count())
        objects.append(grouped.size())
        firsts.append(grouped[[c for c in meta if c != IMAGE_KEY]].first())
    if not sums:
        raise TableLayoutError("the cell table has no rows to aggregate")
    total = pd.concat(sums).groupby(level=0).sum(min_count=1)
    n = pd.concat(counts).groupby(level=0).sum()
    means = (total / n.where(n > 0)).sort_index().add_suffix("__mean")  # extract.aggregate's names
    first = pd.concat(firsts).groupby(level=0).first().reindex(means.index)
    first["Metadata_Object_Count"] = pd.concat(objects).groupby(level=0).sum().reindex(means.index)
    out = pd.concat([first, means], axis=1)
    out.index.name = IMAGE_KEY
    return out.reset_index()


def _keys(frame: pd.DataFrame, seed: int) -> np.ndarray:
    """A seeded pseudo-random key per cell: the same cell gets the same key anywhere.

    The image is named by ``Metadata_sample_id`` when present (ImageNumbers change when a
    resumed extraction renumbers moved images).
    """
    image = SAMPLE_KEY if SAMPLE_KEY in frame.columns else IMAGE_KEY
    ids = pd.DataFrame({"image": frame[image].astype(str), "object": frame[OBJECT_KEY].astype("int64")})
    return pd.util.hash_pandas_object(ids, index=False, hash_key=f"{seed:016d}"[-16:]).to_numpy()


def _codes(image: np.ndarray, obj: np.ndarray) -> np.ndarray:
    """One int64 per cell: ImageNumber in the high 32 bits, ObjectNumber in the low."""
    image, obj = np.asarray(image, dtype=np.int64), np.asarray(obj, dtype=np.int64)
    if len(obj) and (obj.min() < 0 or obj.max() >= 2**32 or image.min() < 0 or image.max() >= 2**31):
        raise TableLayoutError(f"ImageNumber must be in [0, 2**31) and ObjectNumber in [0, 2**32) "
                               f"to sample cells; found ImageNumber {image.min()}..{image.max()}, "
                               f"ObjectNumber {obj.min()}..{obj.max()}")
    return (image << 32) | obj


def _cell_keys(table: ds.Dataset) -> list[str]:
    """The columns that name a cell and its sampling hash: image, object, and sample id if any."""
    return [IMAGE_KEY, OBJECT_KEY] + ([SAMPLE_KEY] if SAMPLE_KEY in table.schema.names else [])


def _chosen(table: ds.Dataset, n: int, seed: int, batch_rows: int) -> np.ndarray:
    """Sorted codes (:func:`_codes`) of the ``n`` cells per image with the lowest keys.

    Reads only the key columns; holds 24 bytes per cell (image, code, key).
    """
    keys = _cell_keys(table)
    images, codes, ranks = [], [], []
    for frame in iter_batches(table, columns=keys, batch_rows=batch_rows):
        image = frame[IMAGE_KEY].to_numpy(dtype=np.int64)
        images.append(image)
        codes.append(_codes(image, frame[OBJECT_KEY].to_numpy(dtype=np.int64)))
        ranks.append(_keys(frame, seed))
    if not images:
        raise TableLayoutError("the cell table has no rows to sample")
    image, code, key = (np.concatenate(a) for a in (images, codes, ranks))
    del images, codes, ranks
    order = np.lexsort((key, image))  # stable: equal keys keep the scan order
    image = image[order]
    first = np.flatnonzero(np.r_[True, image[1:] != image[:-1]])
    rank = np.arange(len(image)) - np.repeat(first, np.diff(np.r_[first, len(image)]))
    return np.sort(code[order[rank < n]])


def sample_cells(table: ds.Dataset, n: int, *, seed: int = 0, columns: list[str] | None = None,
                 batch_rows: int = 65536) -> pd.DataFrame:
    """At most ``n`` cells per image from a cell table, never holding more than the kept rows.

    Cells are ranked within their image by a seeded hash of (image, ObjectNumber); the ``n``
    lowest are kept. The choice depends only on ``seed`` and the cells, not on how the table
    is partitioned or batched. Two passes: the key columns first (24 bytes per cell), then
    every wanted column, batch by batch, keeping the chosen rows only.

    Parameters
    ----------
    table : pyarrow.dataset.Dataset
        Cell table (:func:`open_table`).
    n : int
        Cells per image (an image with fewer keeps all).
    seed : int
        Seed of the choice.
    columns : list of str, optional
        Columns to read (the two keys are always read).
    batch_rows : int
        Rows read at a time.

    Returns
    -------
    pd.DataFrame
        Kept rows sorted by ImageNumber, ObjectNumber.

    Examples
    --------
    Two per-image parts (5 cells and 2 cells) written as the batch job writes them; at most 3
    cells of each image are kept:

    >>> import tempfile
    >>> from pathlib import Path
    >>> import pandas as pd
    >>> from cellcompare.features.tables import open_table, sample_cells
    >>> out = Path(tempfile.mkdtemp()); (out / "cells").mkdir()
    >>> for image, n in ((1, 5), (2, 2)):
    ...     pd.DataFrame({"Metadata_ImageNumber": image, "Metadata_ObjectNumber": range(1, n + 1),
    ...                   "Cells_AreaShape_Area": [10.0 * k for k in range(1, n + 1)]}
    ...                  ).to_parquet(out / "cells" / f"{image:06d}.parquet")
    >>> kept = sample_cells(open_table(out, "cell"), 3, seed=0)
    >>> kept[["Metadata_ImageNumber", "Metadata_ObjectNumber"]].values.tolist()
    [[1, 2], [1, 3], [1, 5], [2, 1], [2, 2]]
    >>> kept["Cells_AreaShape_Area"].tolist()
    [20.0, 30.0, 50.0, 10.0, 20.0]
    """
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise TableLayoutError(f"cells per image must be a whole number >= 1, found {n!r}")
    _require(table, [IMAGE_KEY, OBJECT_KEY], "cell sampling")
    if columns is None and CHUNK_KEY in table.schema.names:  # compact's key, not a column of the parts
        columns = [c for c in table.schema.names if c != CHUNK_KEY]
    if columns is not None:
        keys = _cell_keys(table)
        columns = list(dict.fromkeys([*keys, *columns]))
        _require(table, columns, "cell sampling")
    chosen = _chosen(table, int(n), seed, batch_rows)
    kept, schema = [], None
    for batch in table.to_batches(columns=columns, batch_size=batch_rows, **_READAHEAD):
        schema = batch.schema
        if not batch.num_rows:
            continue
        code = _codes(batch.column(IMAGE_KEY).to_numpy(zero_copy_only=False),
                      batch.column(OBJECT_KEY).to_numpy(zero_copy_only=False))
        at = np.minimum(np.searchsorted(chosen, code), len(chosen) - 1)
        mask = chosen[at] == code
        if mask.any():
            kept.append(batch.filter(pa.array(mask)))
    if schema is None:
        raise TableLayoutError("the cell table has no rows to sample")
    chosen_rows = pa.Table.from_batches(kept, schema=schema)
    del kept
    return _sorted_frame(chosen_rows, [IMAGE_KEY, OBJECT_KEY]).reset_index(drop=True)
