"""Feature tables larger than memory: a partitioned Parquet dataset, streamed, and sampled.

The batch job writes one Parquet part per image (resumable, see :mod:`.batch`). At RxRx1's
scale (125k sites, ~12 M cells x 3,600 features, ~170 GB as float32) that is too many files to
concatenate in memory. This module reads them (or a compacted copy) as one
``pyarrow.dataset`` and never materialises the cell table:

* :func:`compact` rewrites the parts as a Hive-partitioned dataset (``Metadata_Plate=.../``
  or ``Metadata_Chunk=.../``, a chunk being ``chunk_images`` consecutive ImageNumbers),
  streaming record batches, so memory is one batch;
* :func:`open_table` opens the compacted dataset when present, else the per-image parts;
* :func:`stream_image_means` aggregates cells to per-image means batch by batch (memory:
  the per-image result plus one batch);
* :func:`sample_cells` keeps at most ``n`` cells per image, chosen by a seeded hash of
  (image, object) so the choice does not depend on batch order or partitioning (memory: the
  kept rows plus one batch).
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from cellcompare.progress import progress_bar

__all__ = [
    "PARTITIONS",
    "TableLayoutError",
    "compact",
    "iter_batches",
    "open_table",
    "sample_cells",
    "stream_image_means",
]

log = logging.getLogger(__name__)
IMAGE_KEY = "Metadata_ImageNumber"
OBJECT_KEY = "Metadata_ObjectNumber"
SAMPLE_KEY = "Metadata_sample_id"
PARTITIONS = ("plate", "chunk")
_FOLDERS = {"cell": "cells", "image": "image"}


class TableLayoutError(ValueError):
    """A feature folder or dataset lacks what the call needs (parts, a column, a level)."""


def _parts(out_dir: Path, level: str) -> list[Path]:
    if level not in _FOLDERS:
        raise TableLayoutError(f"level must be 'cell' or 'image', found {level!r}")
    folder = out_dir / _FOLDERS[level]
    parts = sorted(p for p in folder.glob("*.parquet") if not p.name.startswith("."))
    if not parts:
        raise TableLayoutError(f"no Parquet parts under {folder}; run `cellcompare extract` first")
    return parts


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
    source = ds.dataset([str(p) for p in _parts(out_dir, level)], format="parquet")
    names = source.schema.names
    columns = {n: ds.field(n) for n in names}
    if partition == "plate":
        if "Metadata_Plate" not in names:
            raise TableLayoutError(f"{out_dir}: the {level} table has no Metadata_Plate column; "
                                   f"use partition='chunk'")
        key = "Metadata_Plate"
        columns[key] = ds.field(key).cast(pa.string())
    else:
        key = "Metadata_Chunk"
        columns[key] = pc.divide(ds.field(IMAGE_KEY).cast(pa.int64()), pa.scalar(int(chunk_images)))
    target = out_dir / "dataset" / level
    tmp = target.with_name(f".{level}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    scanner = source.scanner(columns=columns, batch_size=batch_rows)
    ds.write_dataset(scanner, tmp, format="parquet",
                     partitioning=ds.partitioning(pa.schema([(key, scanner.projected_schema.field(key).type)]),
                                                  flavor="hive"),
                     max_rows_per_group=batch_rows, existing_data_behavior="error")
    if target.exists():
        shutil.rmtree(target)
    tmp.rename(target)
    log.info("compacted %s %s table into %s (partitioned by %s)", out_dir, level, target, key)
    return target


def open_table(out_dir: str | Path, level: str = "cell") -> ds.Dataset:
    """The ``level`` table of ``out_dir`` as a ``pyarrow.dataset`` (compacted copy if present)."""
    out_dir = Path(out_dir)
    compacted = out_dir / "dataset" / level
    if compacted.is_dir():
        return ds.dataset(compacted, format="parquet", partitioning="hive")
    return ds.dataset([str(p) for p in _parts(out_dir, level)], format="parquet")


def iter_batches(table: ds.Dataset, columns: list[str] | None = None,
                 batch_rows: int = 65536) -> Iterator[pd.DataFrame]:
    """Yield ``table`` as DataFrames of at most ``batch_rows`` rows (one batch in memory)."""
    for batch in table.to_batches(columns=columns, batch_size=batch_rows):
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


def sample_cells(table: ds.Dataset, n: int, *, seed: int = 0, columns: list[str] | None = None,
                 batch_rows: int = 65536) -> pd.DataFrame:
    """At most ``n`` cells per image from a cell table, never holding more than the kept rows.

    Cells are ranked within their image by a seeded hash of (ImageNumber, ObjectNumber); the
    ``n`` lowest are kept. The choice depends only on ``seed`` and the cells, not on how the
    table is partitioned or batched.

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

    Returns
    -------
    pd.DataFrame
        Kept rows sorted by ImageNumber, ObjectNumber.
    """
    if n < 1:
        raise TableLayoutError(f"cells per image must be >= 1, found {n}")
    _require(table, [IMAGE_KEY, OBJECT_KEY], "cell sampling")
    if columns is not None:
        keys = [IMAGE_KEY, OBJECT_KEY] + ([SAMPLE_KEY] if SAMPLE_KEY in table.schema.names else [])
        columns = list(dict.fromkeys([*keys, *columns]))
        _require(table, columns, "cell sampling")
    kept: pd.DataFrame | None = None
    for frame in iter_batches(table, columns=columns, batch_rows=batch_rows):
        frame = frame.assign(_key=_keys(frame, seed))
        pool = frame if kept is None else pd.concat([kept, frame], ignore_index=True)
        pool = pool.sort_values([IMAGE_KEY, "_key"], kind="stable")
        kept = pool[pool.groupby(IMAGE_KEY).cumcount() < n]
    if kept is None:
        raise TableLayoutError("the cell table has no rows to sample")
    return (kept.drop(columns="_key").sort_values([IMAGE_KEY, OBJECT_KEY], kind="stable")
            .reset_index(drop=True))
