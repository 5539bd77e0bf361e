"""The per-cell feature table of a run: read only when needed, capped, and recorded.

At RxRx1 scale the per-cell table is ~12 M cells x 3,600 features (~170 GB as float32), so
``compare`` never reads it whole unless asked to:

- it is read only when a model's input comes from it (:func:`reads_cells`: ``labels.level:
  cell``, a classical ``granularity: cell`` model), or, for the report's example cells, only
  the columns those show (:func:`example_cells`);
- ``cell_table.cells_per_image: N`` keeps at most N cells per image, chosen by a hash seeded
  with the run's seed (``features.tables.sample_cells``, which holds the kept rows, one batch
  and 24 bytes per cell of keys);
- the cap enters the key of the units and exports it changes (:func:`cell_table_key`), and
  ``metrics.json``'s ``features.cell_table`` records it with every read (:func:`read_cells`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pandas as pd

from cellcompare.comparison.config import CompareConfig, ModelSpec
from cellcompare.comparison.adapters import model_kind

__all__ = ["cell_table_key", "cell_table_record", "example_cells", "read_cells", "reads_cells"]

log = logging.getLogger(__name__)


def reads_cells(spec: ModelSpec, level: str = "image") -> bool:
    """Whether ``spec``'s input comes from the per-cell feature table.

    True for every model of a ``labels.level: cell`` run (cells are what is labelled) and for a
    classical model with ``granularity: cell``; deep cell models cut their own crops.
    """
    return level == "cell" or (model_kind(spec.name) == "classical" and spec.granularity == "cell")


def cell_table_key(spec: ModelSpec, config: CompareConfig) -> dict[str, Any]:
    """``{"cells_per_image": N}`` when ``cell_table.cells_per_image`` changes ``spec``'s rows.

    Finished units and exports record it, so a run with another cap fits them again. Empty
    without a cap, so units made before the setting existed stay current.
    """
    cap = config.cell_table.cells_per_image
    if cap is None or not reads_cells(spec, config.labels.level):
        return {}
    return {"cells_per_image": int(cap)}


def cell_table_record(config: CompareConfig, n_cells: int) -> dict[str, Any]:
    """``metrics.json``'s ``features.cell_table`` before any read.

    ``cells_per_image`` is the cap (None: every cell), ``seed`` the seed of the choice,
    ``n_cells`` the cells the extraction found (the per-image object counts' sum) and
    ``reads`` one entry per read of :func:`read_cells`.
    """
    cap = config.cell_table.cells_per_image
    return {"cells_per_image": cap, "seed": None if cap is None else config.seed,
            "n_cells": int(n_cells), "reads": []}


def read_cells(config: CompareConfig, folder: Path, record: dict[str, Any], purpose: str,
               columns: list[str] | None = None) -> pd.DataFrame:
    """The per-cell table of ``folder``, at most ``cell_table.cells_per_image`` cells per image.

    Parameters
    ----------
    config : CompareConfig
        ``cell_table`` and ``seed`` are read.
    folder : Path
        The feature extraction's output folder.
    record : dict
        :func:`cell_table_record`; this read is appended to its ``reads``: ``purpose``,
        ``rows`` and ``images`` kept, ``columns`` ("all" or how many).
    purpose : str
        What the cells are for (``models``, ``example cells``).
    columns : list of str, optional
        Only these columns (and the keys); all by default.

    Returns
    -------
    pd.DataFrame
        Rows sorted by ImageNumber, ObjectNumber (``features.load_table``).
    """
    from cellcompare.features import load_table

    cap = config.cell_table.cells_per_image
    cells = load_table(folder, level="cell", cells_per_image=cap, seed=config.seed, columns=columns)
    n_images = int(cells["Metadata_ImageNumber"].nunique()) if len(cells) else 0
    record["reads"].append({"purpose": purpose, "rows": int(len(cells)), "images": n_images,
                            "columns": "all" if columns is None else int(cells.shape[1])})
    log.info("read %d cells of %d images for %s (%s)", len(cells), n_images, purpose,
             "every cell" if cap is None else f"at most {cap} per image, seed {config.seed}")
    return cells


def example_cells(config: CompareConfig, folder: Path, importance: pd.DataFrame,
                  record: dict[str, Any]) -> pd.DataFrame | None:
    """The cell-table columns the report's example cells show, and no others (None: none shown)."""
    from cellcompare.comparison.explain import example_columns
    from cellcompare.features.tables import open_table

    columns = example_columns(importance, open_table(folder, "cell").schema.names)
    return read_cells(config, folder, record, "example cells", columns) if columns else None
