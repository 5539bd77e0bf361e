"""Export chosen models as serve/ MODEL_DIRs: fitted once on all non-hold-out images.

``export_models: [label, ...]`` in the configuration names them; each lands in
``{output}/models/{label}/`` (``serve.json`` + ``model/``) beside ``export.json``, which records
the hash of the settings it was fitted with, so a rerun with the same settings skips it.

A served image must have every channel of the dataset (``serve.json`` ``input.channels``); a
deep model also records the channel subset it uses (``channel_index``), so serve hands it the
same ``deep.inputs.sample_input`` as the comparison did.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

from cellcompare import atomic
from cellcompare.comparison.celltable import cell_table_key
from cellcompare.comparison.config import ModelSpec
from cellcompare.comparison.context import RunContext
from cellcompare.comparison.adapters import (
    ClassicalModel,
    DeepModel,
    FoldData,
    ModelAdapter,
)
from cellcompare.comparison.splits import HOLDOUT, fold_ids
from cellcompare.progress import progress_bar

__all__ = ["export_models", "ExportError", "EXPORT_STAMP"]

log = logging.getLogger(__name__)
#: File beside ``serve.json`` holding the settings hash of the export.
EXPORT_STAMP = "export.json"


class ExportError(ValueError):
    """Fitting or writing an exported model failed; the message names the model and directory."""


def _settings_hash(spec: ModelSpec, train_ids, context: RunContext, dtype: str | None) -> str:
    """sha256 of everything the exported model depends on (model settings, data, channels)."""
    config = context.config
    index = None if context.channel_index is None else list(context.channel_index)
    key = {"name": spec.name, "granularity": spec.granularity, "params": spec.params,
           "seed": config.seed, "features": config.features, "channels": context.channel_names,
           "channel_index": index, "dtype": dtype, "dataset": config.dataset.path,
           "train_ids": sorted(map(str, train_ids)), "data": context.data_digest, "format": 2,
           **cell_table_key(spec, config)}
    task = context.task.serve_record()
    if task is not None:  # a cell task's record is in serve.json (an image task's key is as before)
        key["task"] = task
    text = json.dumps(key, sort_keys=True, default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _is_current(target: Path, digest: str) -> bool:
    stamp = target / EXPORT_STAMP
    if not (target / "serve.json").is_file() or not stamp.is_file():
        return False
    try:
        return json.loads(stamp.read_text()).get("settings_sha256") == digest
    except json.JSONDecodeError:
        return False


def _write(adapter: ModelAdapter, train: FoldData, target: Path, context: RunContext,
           dtype: str | None) -> None:
    """Write the fitted ``adapter``'s model as a serve MODEL_DIR at ``target``."""
    from cellcompare import serve

    channels = context.channel_names
    task = context.task.serve_record()
    if isinstance(adapter, ClassicalModel):
        representation = adapter.representation
        learned = {} if representation.name == "cellprofiler" else {
            "embedder": representation.embedder(),
            "embedding": representation.serve_record(context.channel_index)}
        serve.export_model(adapter.estimator_, target, channels=channels, dtype=dtype,
                           feature_config=context.feature_config, train_table=adapter.rows(train),
                           task=task, **learned)
    elif isinstance(adapter, DeepModel):
        cell = adapter.granularity == "cell"
        serve.export_model(adapter.classifier_, target, channels=channels, dtype=dtype,
                           channel_index=adapter.channel_index, granularity=adapter.granularity,
                           feature_config=context.feature_config if cell else None, task=task)
    else:
        raise ValueError(f"{type(adapter).__name__} is neither a ClassicalModel nor a DeepModel; "
                         "serve cannot load it")


def export_models(context: RunContext, out: Path) -> dict[str, str]:
    """Fit each model of ``config.export_models`` on all non-hold-out images and export it.

    Parameters
    ----------
    context : RunContext
        The run's context (configuration, dataset, folds, feature tables, channel subset).
    out : Path
        Results directory; models go to ``out/models/<label>/``.

    Returns
    -------
    dict
        ``{label: path of the MODEL_DIR}`` for every exported (or already current) model.
    """
    config = context.config
    by_label = {m.label: m for m in config.models}
    train_ids, _ = fold_ids(context.folds, HOLDOUT)
    ds = context.dataset
    dtype = None if getattr(ds, "dtype", None) is None else str(ds.dtype)
    exported: dict[str, str] = {}
    for label in progress_bar(config.export_models, desc="export", unit="model"):
        spec = by_label[label]
        target = out / "models" / label
        digest = _settings_hash(spec, train_ids, context, dtype)
        if _is_current(target, digest):
            log.info("model %s already exported to %s with these settings; skipping", label, target)
            exported[label] = str(target)
            continue
        if target.exists():
            log.warning("model %s in %s was exported with other settings; exporting again", label, target)
            shutil.rmtree(target)
        log.info("fitting %s on all %d non-hold-out images for export", label, len(train_ids))
        train = context.fold_data(train_ids)
        adapter = context.adapter(spec)
        try:
            adapter.fit(train)
            _write(adapter, train, target, context, dtype)
        except ValueError as exc:
            raise ExportError(f"exporting model {label!r} ({spec.name}) to {target} failed: "
                              f"{type(exc).__name__}: {exc}") from exc
        stamp: dict[str, Any] = {"label": label, "name": spec.name, "settings_sha256": digest,
                                 "n_train": int(len(train_ids))}
        atomic.write_json(target / EXPORT_STAMP, stamp)  # last: marks it complete
        log.info("exported %s (%s) to %s", label, spec.name, target)
        exported[label] = str(target)
    return exported
