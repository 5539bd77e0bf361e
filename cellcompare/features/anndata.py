"""Feature profiles as AnnData (``cellcompare export RESULTS --to anndata``).

The scverse form pycytominer and CytoTable read: ``obs`` holds the ``Metadata_*`` columns (one
row per image or per cell), ``var`` the features (index the CellProfiler name, with its
``compartment`` and ``family``), ``X`` the values as float32. ``obs`` is indexed ``"0"``,
``"1"``, ... (pycytominer's reader turns the index into integers). A comparison's predictions
can be added to ``obs`` as ``Metadata_Prediction_{model}`` and ``Metadata_Proba_{model}_{class}``
(out-of-fold, one per image; cells carry their image's), ``Metadata_`` so that pycytominer
never takes them for features.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["FORMATS", "LEVELS", "export_anndata", "prediction_columns", "to_anndata"]

logger = logging.getLogger(__name__)

FORMATS = ("h5ad", "zarr")
LEVELS = ("image", "cell")


def _python_strings():
    """pandas' pre-3.0 text columns (object arrays of ``str``) while an AnnData is built and
    written: anndata 0.12.6, the last release that allows pandas 3, has no writer for pandas 3's
    string arrays (``IORegistryError ... ArrowStringArray``)."""
    return pd.option_context("future.infer_string", False)


def _obs(table: pd.DataFrame) -> pd.DataFrame:
    columns = {}
    for column in (c for c in table.columns if c.startswith("Metadata_")):
        values = table[column]
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            columns[column] = values.to_numpy()
        else:                               # text (None where missing), as anndata writes it
            columns[column] = np.array([None if pd.isna(v) else str(v) for v in values], dtype=object)
    return pd.DataFrame(columns, index=pd.Index([str(i) for i in range(len(table))], dtype=object))


def to_anndata(table: pd.DataFrame) -> Any:
    """One AnnData of a feature table: ``obs`` its ``Metadata_*`` columns, ``X`` the rest.

    Parameters
    ----------
    table : pd.DataFrame
        A per-image or per-cell table (:func:`features.load_table`).

    Returns
    -------
    anndata.AnnData
        ``X`` float32 ``(rows, features)``; ``var`` indexed by feature name with
        ``compartment`` (``Cells``) and ``family`` (``AreaShape``).

    Examples
    --------
    >>> import pandas as pd
    >>> table = pd.DataFrame({"Metadata_Well": ["A01", "B02"], "Cells_AreaShape_Area": [40, 52],
    ...                       "Nuclei_Intensity_MeanIntensity_DNA": [0.25, 0.5]})
    >>> adata = to_anndata(table)
    >>> adata.shape, adata.X.dtype, adata.obs["Metadata_Well"].tolist()
    ((2, 2), dtype('float32'), ['A01', 'B02'])
    >>> adata.var[["compartment", "family"]].values.tolist()
    [['Cells', 'AreaShape'], ['Nuclei', 'Intensity']]
    """
    import anndata

    features = [c for c in table.columns if not c.startswith("Metadata_")]
    parts = [name.split("_") for name in features]
    x = table[features].to_numpy(dtype=np.float32) if features else np.zeros((len(table), 0), np.float32)
    with _python_strings():
        var = pd.DataFrame({"compartment": [p[0] for p in parts],
                            "family": [p[1] if len(p) > 1 else "" for p in parts]},
                           index=pd.Index(features, dtype=object))
        return anndata.AnnData(X=x, obs=_obs(table), var=var)


def prediction_columns(predictions: pd.DataFrame) -> pd.DataFrame:
    """``Metadata_Prediction_{model}`` and ``Metadata_Proba_{model}_{class}`` by ``sample_id``.

    Parameters
    ----------
    predictions : pd.DataFrame
        A comparison's ``predictions.parquet``: ``sample_id``, ``model``, ``proba_{class}``.

    Examples
    --------
    >>> import pandas as pd
    >>> p = pd.DataFrame({"sample_id": ["a", "a"], "model": ["svm", "cnn"], "fold": [0, 0],
    ...                   "proba_x": [0.7, 0.2], "proba_y": [0.3, 0.8]})
    >>> table = prediction_columns(p)
    >>> table.columns.tolist()
    ['Metadata_Prediction_svm', 'Metadata_Proba_svm_x', 'Metadata_Proba_svm_y', 'Metadata_Prediction_cnn', 'Metadata_Proba_cnn_x', 'Metadata_Proba_cnn_y']
    >>> table.loc["a", "Metadata_Prediction_cnn"], float(table.loc["a", "Metadata_Proba_cnn_y"])
    ('y', 0.8)
    """
    probas = [c for c in predictions.columns if c.startswith("proba_")]
    blocks = []
    for model, rows in predictions.groupby("model", sort=False):
        rows = rows.set_index("sample_id")
        block = pd.DataFrame(index=rows.index)
        block[f"Metadata_Prediction_{model}"] = (rows[probas].idxmax(axis=1)
                                                 .str.removeprefix("proba_").astype("string"))
        for column in probas:
            block[f"Metadata_Proba_{model}_{column.removeprefix('proba_')}"] = rows[column].to_numpy()
        blocks.append(block)
    return pd.concat(blocks, axis=1)


def _features_dir(results: Path) -> Path:
    """The extraction folder of a comparison's results (``features/``), or ``results`` itself."""
    if (results / "manifest.json").is_file():
        return results
    if (results / "features" / "manifest.json").is_file():
        return results / "features"
    raise FileNotFoundError(f"{results} is neither a comparison's results (no features/manifest.json) "
                            f"nor an extraction folder (no manifest.json)")


def export_anndata(results: str | Path, out: str | Path | None = None, *,
                   levels: tuple[str, ...] = LEVELS, fmt: str = "h5ad",
                   predictions: bool = False) -> list[Path]:
    """Write the per-image and per-cell profiles of ``results`` as AnnData files.

    Parameters
    ----------
    results : str or Path
        A comparison's output folder (its ``features/``) or an extraction folder.
    out : str or Path, optional
        Folder of the files (default ``results/anndata``): ``image.h5ad``, ``cell.h5ad`` (or
        ``.zarr`` stores).
    levels : tuple of {"image", "cell"}
        Which tables to write.
    fmt : {"h5ad", "zarr"}
        File format.
    predictions : bool
        Add the comparison's out-of-fold predictions (``predictions.parquet``) to ``obs``.

    Returns
    -------
    list of Path
        The files written.
    """
    from cellcompare.atomic import atomic_path

    from .batch import load_table

    if fmt not in FORMATS:
        raise ValueError(f"--format must be one of {list(FORMATS)}, got {fmt!r}")
    unknown = [level for level in levels if level not in LEVELS]
    if unknown:
        raise ValueError(f"levels must be among {list(LEVELS)}, got {unknown}")
    results = Path(results)
    features = _features_dir(results)
    extra = None
    if predictions:
        path = results / "predictions.parquet"
        if not path.is_file():
            raise FileNotFoundError(f"{path} not found: predictions come from a comparison's results")
        extra = prediction_columns(pd.read_parquet(path))
    out = Path(out) if out is not None else results / "anndata"
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for level in levels:
        table = load_table(features, level)
        if extra is not None:
            joined = extra.reindex(table["Metadata_sample_id"].astype(str).to_numpy())
            table = pd.concat([table.reset_index(drop=True), joined.reset_index(drop=True)], axis=1)
        adata = to_anndata(table)
        target = out / f"{level}.{fmt}"
        with _python_strings():
            if fmt == "h5ad":
                with atomic_path(target) as tmp:
                    adata.write_h5ad(tmp)
            else:
                adata.write_zarr(target)
        logger.info("wrote %s: %d %ss x %d features", target, adata.n_obs, level, adata.n_vars)
        written.append(target)
    return written
