"""Result files of a cell task for the report: "fetch cells" galleries (CellProfiler Analyst).

For a ``labels.level: cell`` run, :func:`write_cell_gallery` picks, for the model with the best
balanced accuracy, per true class the most confidently right and the most confidently wrong test
cells, and writes their crops as an array beside a table: ``cells/gallery.parquet`` (``cell_id,
model, fold, true_label, predicted, probability, kind, position``) and ``cells/gallery.npy``
(float16 ``(n, C, S, S)`` crops in [0, 1], row ``position``). The report only reads them.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cellcompare.atomic import atomic_path
from cellcompare.comparison.cellids import cell_id

__all__ = ["GALLERY_CROPS", "GALLERY_TABLE", "pick_cells", "write_cell_fractions", "write_cell_gallery"]

log = logging.getLogger(__name__)
GALLERY_TABLE = "cells/gallery.parquet"
GALLERY_CROPS = "cells/gallery.npy"


def pick_cells(predictions: pd.DataFrame, classes: list[str], *, per_class: int = 6) -> pd.DataFrame:
    """Per true class, the ``per_class`` most probable right and wrong predictions.

    Parameters
    ----------
    predictions : pd.DataFrame
        One model's rows of ``predictions.parquet`` (``sample_id``, ``true_label``, ``proba_*``).
    classes : list of str
        Column order of the probabilities.

    Returns
    -------
    pd.DataFrame
        ``cell_id, fold, true_label, predicted, probability, kind`` (``kind``: correct | wrong).
    """
    proba = predictions[[f"proba_{c}" for c in classes]].to_numpy(dtype=float)
    frame = pd.DataFrame({"cell_id": predictions["sample_id"].astype(str).to_numpy(),
                          "fold": predictions["fold"].to_numpy(),
                          "true_label": predictions["true_label"].astype(str).to_numpy(),
                          "predicted": np.asarray(classes, dtype=object)[proba.argmax(1)],
                          "probability": proba.max(1)})
    frame["kind"] = np.where(frame.predicted == frame.true_label, "correct", "wrong")
    frame = frame.sort_values(["true_label", "kind", "probability", "cell_id"],
                              ascending=[True, True, False, True])
    return frame.groupby(["true_label", "kind"], sort=True).head(per_class).reset_index(drop=True)


def write_cell_gallery(out: Path, metrics: dict[str, Any], crops: Any, *, per_class: int = 6) -> str | None:
    """Write the gallery files of a cell task; returns the model shown (None when impossible).

    Parameters
    ----------
    out : Path
        Results directory (``predictions.parquet`` is read).
    metrics : dict
        ``models`` (with ``summary``) and ``classes`` as in ``metrics.json``.
    crops : deep.crop_cache.CropCache
        The run's crops (cell ids are ``{image}#{object}``).
    """
    models = metrics.get("models") or {}
    scored = {m: info["summary"].get("balanced_accuracy", {}).get("mean") for m, info in models.items()}
    scored = {m: s for m, s in scored.items() if s is not None}
    if not scored or crops is None:
        return None
    best = max(sorted(scored), key=lambda m: scored[m])
    preds = pd.read_parquet(Path(out) / "predictions.parquet")
    preds = preds[(preds.model == best) & (preds.fold >= 0)]
    chosen = pick_cells(preds, list(metrics["classes"]), per_class=per_class)
    ids = cell_id(crops.cells["Metadata_sample_id"], crops.cells["Metadata_ObjectNumber"])
    position = pd.Series(np.arange(len(ids)), index=ids)
    chosen = chosen[chosen.cell_id.isin(position.index)].reset_index(drop=True)
    chosen.insert(1, "model", best)
    chosen["position"] = np.arange(len(chosen))
    rows = position.loc[chosen.cell_id].to_numpy(dtype=np.int64)
    array = np.asarray(crops.crops[np.sort(rows)] if len(rows) else np.zeros((0, 1, 1, 1)), dtype=np.float16)
    array = array[np.argsort(np.argsort(rows))] if len(rows) else array
    folder = Path(out) / "cells"
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(Path(out) / GALLERY_CROPS) as tmp, open(tmp, "wb") as fh:
        np.save(fh, array)
    with atomic_path(Path(out) / GALLERY_TABLE) as tmp:
        chosen.to_parquet(tmp, index=False)
    log.info("cell gallery of %s: %d cells written to %s", best, len(chosen), folder)
    return best


def write_cell_fractions(out: Path, metrics: dict[str, Any], index: pd.DataFrame,
                         positive: str, *, preview: int = 12) -> dict[str, str]:
    """A cell task's per-image positive fractions, truth and predicted, and the fetch preview.

    ``cells/fractions.csv``: per image, ``n_cells`` labelled, the cells of ``positive`` by the
    labels (``n_truth``, ``fraction_truth``) and each model's predicted fraction over the same
    cells, from its out-of-fold predictions (``fraction_<model>``). ``cells/fetch_preview.csv``:
    the ``preview`` most uncertain cells of the best model (``comparison.fetch.suggest_cells``),
    which ``cellcompare fetch`` extends to every cell.

    Parameters
    ----------
    out : Path
        Results directory (``predictions.parquet`` is read).
    metrics : dict
        ``models``, ``classes`` and ``metric_names`` as in ``metrics.json``.
    index : pd.DataFrame
        The task's units: ``sample_id`` (cell id), ``label``, ``image``.
    positive : str
        The class counted.

    Returns
    -------
    dict
        ``{"fractions": path, "fetch_preview": path}`` relative to ``out``.
    """
    from cellcompare.comparison.fetch import best_classical, suggest_cells
    from cellcompare.fractions import class_fractions

    classes = list(metrics["classes"])
    truth = index[["sample_id", "label", "image"]].astype(str)
    table = class_fractions(truth, ["image"], "label", classes)
    frame = table[["image", "n_cells", f"n_{positive}", f"fraction_{positive}"]].rename(
        columns={f"n_{positive}": "n_truth", f"fraction_{positive}": "fraction_truth"})
    preds = pd.read_parquet(Path(out) / "predictions.parquet")
    preds = preds[preds.fold >= 0]
    for model, part in preds.groupby("model", sort=True):
        proba = part[[f"proba_{c}" for c in classes]].to_numpy(dtype=float)
        cells = pd.DataFrame({"image": truth.set_index("sample_id")["image"]
                              .reindex(part["sample_id"].astype(str)).to_numpy(),
                              "predicted": np.asarray(classes, dtype=object)[proba.argmax(1)]})
        got = class_fractions(cells, ["image"], "predicted", classes)
        frame[f"fraction_{model}"] = frame["image"].map(got.set_index("image")[f"fraction_{positive}"])
    folder = Path(out) / "cells"
    folder.mkdir(parents=True, exist_ok=True)
    with atomic_path(folder / "fractions.csv") as tmp:
        frame.to_csv(tmp, index=False)
    files = {"fractions": "cells/fractions.csv"}
    try:
        best = best_classical(metrics)
    except ValueError:
        return files
    mine = preds[preds.model == best].reset_index(drop=True)
    chosen = suggest_cells(mine, classes, "uncertain", preview, positive=positive)
    chosen = chosen[["sample_id", "true_label", "suggested", "probability"]].rename(
        columns={"sample_id": "cell_id"}).assign(model=best)
    with atomic_path(folder / "fetch_preview.csv") as tmp:
        chosen.to_csv(tmp, index=False)
    files["fetch_preview"] = "cells/fetch_preview.csv"
    return files
