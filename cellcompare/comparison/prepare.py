"""The steps before the units: open the dataset, extract the features, build the task (once).

:func:`build_task` is the one place a run decides what it classifies: an
:class:`~cellcompare.comparison.task.ImageTask` from the dataset's labels, or a
:class:`~cellcompare.comparison.task.CellTask` from per-cell labels (``comparison.labels``).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import pandas as pd

from cellcompare import atomic
from cellcompare.comparison.celltable import cell_table_record, read_cells, reads_cells
from cellcompare.comparison.config import CompareConfig, ConfigError
from cellcompare.comparison.labels import prepare_cell_task
from cellcompare.comparison.task import ImageTask, Task
from cellcompare.datasets.explore import summarize

__all__ = ["build_task", "channel_index", "check_manifest", "dataset_info", "extract_features",
           "prepare_dataset"]

log = logging.getLogger(__name__)


def prepare_dataset(config: CompareConfig):
    """Open the configured dataset, writing the synthetic one first when asked and absent."""
    section = config.dataset
    root = Path(section.path)
    if not root.exists() and section.synth is not None:
        from cellcompare.datasets.synth import make_synthetic

        log.info("writing the synthetic %s dataset into %s", section.synth.kind, root)
        make_synthetic(root, section.synth)
    return section.open()


def dataset_info(ds: Any, config: CompareConfig, out: Path) -> dict:
    """``metrics.json`` ``dataset``; writes ``dataset_summary.json`` (``datasets.explore``)."""
    summary = summarize(ds)
    atomic.write_json(out / "dataset_summary.json", summary)
    index_labels = pd.Series(ds.labels).astype(str)
    dropped = sorted(set(config.dataset.exclude_classes))
    return {"root": str(ds.root), "layout": ds.layout, "n_images": int(len(ds)),
            "channels": list(ds.channel_names),
            "class_counts": {str(k): int(v) for k, v in index_labels.value_counts().sort_index().items()},
            "group_counts": summary.get("group_counts", {}), "dropped_classes": dropped,
            "skipped": [{"path": s.path, "reason": s.reason} for s in ds.skipped]}


def extract_features(config: CompareConfig, out: Path, fconfig: Any,
                     segmentation: dict) -> tuple[pd.DataFrame, dict]:
    """Run (or resume) the feature extraction; return the per-image table and its record.

    ``fconfig`` and ``segmentation`` are what ``features.plan.plan_extraction`` chose for the
    run's ``CompareConfig.feature_config()`` (its channels and diameter, and how).

    The per-cell table is not read here (``celltable.read_cells`` reads it when needed): only
    its schema, for the number of per-cell features.
    """
    from cellcompare.features import load_table, run_extraction
    from cellcompare.features.shards import count_done
    from cellcompare.features.tables import open_table

    folder = out / "features"
    options = config.dataset.open_options()
    check_manifest(folder / "manifest.json", fconfig.to_dict(), options)
    done = count_done(folder)
    start = time.perf_counter()
    # the settings as given are recorded beside the choices made for them (one plan per run)
    run_extraction(config.dataset.path, folder, config.feature_config(), jobs=config.jobs,
                   dataset_options=options, plan=(fconfig, segmentation))
    seconds = time.perf_counter() - start
    images = load_table(folder, level="image")
    cell_columns = open_table(folder, "cell").schema.names
    n_features = sum(not c.startswith("Metadata_") and not c.endswith("__mean") for c in images.columns)
    counts = (images["Metadata_Object_Count"] if "Metadata_Object_Count" in images
              else pd.Series([0]))
    info = {"preset": fconfig.preset, "n_features": int(n_features),
            "n_cell_features": int(sum(not c.startswith("Metadata_") for c in cell_columns)),
            "cells_per_image": {"median": float(counts.median()), "min": int(counts.min()),
                                "max": int(counts.max())},
            "cell_table": cell_table_record(config, int(counts.sum())),
            "extraction": _extraction_timing(out, len(images) - done, seconds, config.jobs)}
    return images, info


def _extraction_timing(out: Path, n_images: int, seconds: float, jobs: int) -> dict | None:
    """Wall seconds per image of the feature extraction, kept from the run that extracted."""
    path = out / "extraction_timing.json"
    if n_images <= 0:
        return json.loads(path.read_text()) if path.is_file() else None
    timing = {"images": int(n_images), "seconds": seconds, "jobs": int(jobs),
              "seconds_per_image": seconds / n_images}
    atomic.write_json(path, timing)
    return timing


def check_manifest(path: Path, wanted: dict, dataset_options: dict | None = None) -> None:
    """Refuse to resume an extraction made with other feature settings (tables would mix).

    ``dataset_options`` (when given) are compared with the manifest's ``dataset_options`` as
    :func:`features.batch.dataset_options_conflict` does; differing keys are reported as
    ``dataset_options.<key>``.
    """
    if not path.is_file():
        return
    from cellcompare.features.batch import config_conflict, dataset_options_conflict

    manifest = json.loads(path.read_text())
    differ = config_conflict(manifest.get("config"), wanted)
    if dataset_options is not None:
        differ += [f"dataset_options.{k}" for k in
                   dataset_options_conflict(manifest.get("dataset_options", {}), dataset_options)]
    if differ:
        raise ConfigError(f"{path.parent} holds features extracted with other settings (keys "
                          f"{differ} differ); delete that folder or set another output")


def channel_index(ds: Any, config: CompareConfig) -> tuple[int, ...] | None:
    """Positions of ``dataset.channels`` among the dataset's channels (``None``: all)."""
    wanted = config.dataset.channels
    if wanted is None:
        return None
    names = list(ds.channel_names)
    missing = [c for c in wanted if c not in names]
    if missing:
        raise ConfigError(f"dataset.channels names {missing} that {ds.root} does not have; "
                          f"its channels are {names}")
    return tuple(names.index(c) for c in wanted)


def build_task(config: CompareConfig, ds: Any, out: Path, *, feature_config: Any,
               image_table: pd.DataFrame | None, feature_info: dict, class_counts: dict) -> Task:
    """The task of the run, built once: what the folds split and the models classify.

    Parameters
    ----------
    config : CompareConfig
        ``labels`` chooses the task (``level: image``: the dataset's labels; ``level: cell``:
        per-cell labels from a gate or annotations).
    ds : datasets.ImageDataset
        The opened dataset.
    out : Path
        Results directory (``features/`` is read; a cell task writes ``cells/``).
    feature_config : features.FeatureConfig
        ``CompareConfig.feature_config()`` (annotations are matched to its nuclei).
    image_table : pd.DataFrame or None
        The per-image feature table (``None`` when no model reads features).
    feature_info : dict
        ``metrics.json`` ``features`` (its ``cell_table`` record notes each read of cells).
    class_counts : dict
        Images per class of the dataset (an image task's counts).

    Returns
    -------
    ImageTask or CellTask
    """
    cells = None
    if any(reads_cells(m, config.labels.level) for m in config.models):
        cells = read_cells(config, out / "features", feature_info["cell_table"], "models")
    channels = channel_index(ds, config)
    if config.labels.level == "cell":
        return prepare_cell_task(config, ds, cells, segmentation=feature_config,
                                 channel_index=channels, out=out)
    return ImageTask(index=ds.index, classes=tuple(str(c) for c in ds.classes), folds=config.folds,
                     image_table=image_table, cell_table=cells, channel_index=channels,
                     class_counts=class_counts)
