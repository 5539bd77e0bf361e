"""Embeddings as feature tables, under the contract of the CellProfiler tables.

A network's per-cell embeddings become a per-cell table and their per-image means a per-image
table, with the ``Metadata_*`` columns every feature table carries (``features.extract.
image_metadata``: ImageNumber, sample id, label, group, Plate/Well/Site) and, per cell,
``Metadata_ObjectNumber`` and the nucleus centre. Features are named
``Embedding_<source>_<i>`` (``Embedding_imagenet_0000``), so tables of two sources join on the
keys. :func:`write_embedding_tables` writes them as shards (``cells/`` and ``image/``) that
``features.load_table`` and pycytominer read as they read extracted features.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from .extract import image_metadata
from .shards import SHARD_IMAGES, shard_name, storage_table, write_shard

__all__ = ["embedding_columns", "cell_embedding_table", "embedding_tables", "image_embedding_table",
           "index_metadata", "write_embedding_tables"]

_KEYS = ["Metadata_ImageNumber", "Metadata_ObjectNumber"]


def embedding_columns(source: str, dim: int) -> list[str]:
    """Feature names of a ``dim``-long embedding from ``source``.

    Examples
    --------
    >>> embedding_columns("ssl", 3)
    ['Embedding_ssl_0000', 'Embedding_ssl_0001', 'Embedding_ssl_0002']
    """
    return [f"Embedding_{source}_{i:04d}" for i in range(int(dim))]


def index_metadata(index: pd.DataFrame) -> pd.DataFrame:
    """The per-image ``Metadata_*`` columns of a dataset index (``sample_id, label, group`` and
    metadata), ImageNumber being the 1-based row position, as extraction numbers images.

    Examples
    --------
    >>> import pandas as pd
    >>> meta = index_metadata(pd.DataFrame({"sample_id": ["a", "b"], "label": ["x", "y"],
    ...                                     "group": ["p", "p"], "Metadata_Well": ["A01", "A02"]}))
    >>> meta[["Metadata_ImageNumber", "Metadata_sample_id", "Metadata_Well"]].values.tolist()
    [[1, 'a', 'A01'], [2, 'b', 'A02']]
    """
    rows = []
    for number, row in enumerate(index.to_dict("records"), start=1):
        extra = {k: v for k, v in row.items() if k not in ("sample_id", "label", "group")}
        rows.append(image_metadata(row["sample_id"], row.get("label"), row.get("group"), extra, number))
    return pd.DataFrame(rows)


def cell_embedding_table(values: np.ndarray, cells: pd.DataFrame, metadata: pd.DataFrame,
                         source: str) -> pd.DataFrame:
    """One row per cell: its image's metadata, its ObjectNumber and centre, then the embedding.

    Parameters
    ----------
    values : np.ndarray
        ``(n_cells, d)`` embeddings, aligned with ``cells``.
    cells : pd.DataFrame
        ``Metadata_sample_id, Metadata_ObjectNumber, Metadata_Location_Center_X/Y`` per cell
        (a crop cache's ``cells``).
    metadata : pd.DataFrame
        :func:`index_metadata` of the images.
    source : str
        Names the columns (:func:`embedding_columns`).
    """
    if len(values) != len(cells):
        raise ValueError(f"{len(values)} embeddings for {len(cells)} cells")
    cells = cells.reset_index(drop=True)
    meta = metadata.set_index("Metadata_sample_id").loc[cells["Metadata_sample_id"].astype(str)]
    table = meta.reset_index()
    for column in ("Metadata_ObjectNumber", "Metadata_Location_Center_X", "Metadata_Location_Center_Y"):
        table[column] = cells[column].to_numpy()
    features = pd.DataFrame(np.asarray(values, dtype=np.float32),
                            columns=embedding_columns(source, np.shape(values)[1]))
    return pd.concat([table, features], axis=1)


def image_embedding_table(cells: pd.DataFrame, metadata: pd.DataFrame,
                          sample_ids: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per image with cells: the mean of its cells' embeddings (as extraction's image
    rows hold its cells' means) and ``Metadata_Object_Count``.

    ``sample_ids`` (default: every image of ``metadata``) orders the rows; images without a
    cell get no row (a model then gives them the training prior, as for a failed extraction).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> meta = index_metadata(pd.DataFrame({"sample_id": ["a", "b"], "label": ["x", "y"], "group": "p"}))
    >>> crops = pd.DataFrame({"Metadata_sample_id": ["a", "a"], "Metadata_ObjectNumber": [1, 2],
    ...                       "Metadata_Location_Center_X": 0.0, "Metadata_Location_Center_Y": 0.0})
    >>> cells = cell_embedding_table(np.array([[1.0, 2.0], [3.0, 6.0]]), crops, meta, "t")
    >>> image = image_embedding_table(cells, meta)
    >>> image[["Metadata_sample_id", "Metadata_Object_Count", "Embedding_t_0000", "Embedding_t_0001"]].values.tolist()
    [['a', 2, 2.0, 4.0]]
    """
    features = [c for c in cells.columns if c.startswith("Embedding_")]
    means = cells.groupby("Metadata_sample_id", sort=False)[features].mean()
    counts = cells.groupby("Metadata_sample_id", sort=False).size().rename("Metadata_Object_Count")
    order = [str(s) for s in (metadata["Metadata_sample_id"] if sample_ids is None else sample_ids)]
    order = [s for s in order if s in means.index]
    meta = metadata.set_index("Metadata_sample_id").loc[order].reset_index()
    meta["Metadata_Object_Count"] = counts.loc[order].to_numpy()
    return pd.concat([meta, means.loc[order].reset_index(drop=True).astype(np.float32)], axis=1)


def embedding_tables(values: np.ndarray, cells: pd.DataFrame | None, metadata: pd.DataFrame,
                     source: str, sample_ids: Sequence[str]) -> tuple[pd.DataFrame, pd.DataFrame | None]:
    """``(image table, cell table)`` of embeddings ``values``.

    With ``cells`` (one row per embedded crop) the cell table is :func:`cell_embedding_table`
    and the image table its means (:func:`image_embedding_table`); without, ``values`` are one
    per image of ``sample_ids`` (whole images) and there is no cell table.
    """
    if cells is not None:
        table = cell_embedding_table(values, cells, metadata, source)
        return image_embedding_table(table, metadata, sample_ids), table
    ids = [str(s) for s in sample_ids]
    if len(values) != len(ids):
        raise ValueError(f"{len(values)} embeddings for {len(ids)} images")
    rows = metadata.set_index("Metadata_sample_id").loc[ids].reset_index()
    frame = pd.DataFrame(np.asarray(values, np.float32), columns=embedding_columns(source, np.shape(values)[1]))
    return pd.concat([rows, frame], axis=1), None


def write_embedding_tables(out: str | Path, image: pd.DataFrame, cells: pd.DataFrame | None, *,
                           dtype: str = "float32", shard_images: int = SHARD_IMAGES) -> list[Path]:
    """Write ``image`` and ``cells`` as ``out/{image,cells}/shard-*.parquet`` (ImageNumber ranges
    of ``shard_images``, entries in each footer), readable by ``features.load_table``.

    Returns the files written. The folder is the output of an embedding step alone: existing
    shards of the same ranges are replaced.
    """
    out = Path(out)
    written = []
    for level, table in (("image", image), ("cells", cells)):
        if table is None:
            continue
        folder = out / level
        folder.mkdir(parents=True, exist_ok=True)
        numbers = table["Metadata_ImageNumber"].to_numpy(dtype=np.int64)
        first_of = (numbers - 1) // shard_images * shard_images + 1
        for first in np.unique(first_of):
            part = table[first_of == first].sort_values([k for k in _KEYS if k in table.columns])
            arrow = storage_table(pa.Table.from_pandas(part, preserve_index=False), dtype)
            members = [(int(n), str(sid), arrow.filter(pa.array(part["Metadata_ImageNumber"].to_numpy() == n)))
                       for n, sid in dict(zip(part["Metadata_ImageNumber"], part["Metadata_sample_id"])).items()]
            path = folder / shard_name(int(first), shard_images)
            write_shard(path, members, arrow.schema)
            written.append(path)
    return written
