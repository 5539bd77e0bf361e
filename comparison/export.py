"""Export chosen models as serve/ MODEL_DIRs: fitted once on all non-hold-out images.

``export_models: [label, ...]`` in the configuration names them; each lands in
``{output}/models/{label}/`` (``serve.json`` + ``model/``) beside ``export.json``, which records
the hash of the settings it was fitted with, so a rerun with the same settings skips it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm.auto import tqdm

from comparison.config import CompareConfig, ModelSpec
from comparison.models import ClassicalModel, FoldData, build_adapter, model_kind
from comparison.splits import HOLDOUT, fold_ids

__all__ = ["export_models", "make_adapter", "ExportError", "EXPORT_STAMP"]

log = logging.getLogger(__name__)
#: File beside ``serve.json`` holding the settings hash of the export.
EXPORT_STAMP = "export.json"


class ExportError(ValueError):
    """Fitting or writing an exported model failed; the message names the model and directory."""


def make_adapter(spec: ModelSpec, context: dict, config: CompareConfig):
    """The adapter of ``spec`` with the run's seed (deep models get the selected channels)."""
    params = dict(spec.params)
    if model_kind(spec.name) == "deep" and context.get("channel_index") is not None:
        params.setdefault("channels", context["channel_index"])
    return build_adapter(spec.name, granularity=spec.granularity, params=params, seed=config.seed)


def _export_channels(spec: ModelSpec, ds, config: CompareConfig) -> list[str]:
    """Channels a served image must have: deep models see only ``dataset.channels``."""
    if model_kind(spec.name) == "deep" and config.dataset.channels is not None:
        return list(config.dataset.channels)
    return [str(c) for c in ds.channel_names]


def _settings_hash(spec: ModelSpec, train_ids, channels: list[str], config: CompareConfig,
                   dtype: str | None) -> str:
    """sha256 of everything the exported model depends on (model settings, data, channels)."""
    key = {"name": spec.name, "granularity": spec.granularity, "params": spec.params,
           "seed": config.seed, "features": config.features, "channels": channels, "dtype": dtype,
           "dataset": config.dataset.path, "train_ids": sorted(map(str, train_ids))}
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


def _fit_all(spec: ModelSpec, train: FoldData, context: dict, config: CompareConfig):
    """Fit ``spec`` on ``train``; return the object serve.export_model takes and the train table."""
    adapter = make_adapter(spec, context, config)
    adapter.fit(train)
    if isinstance(adapter, ClassicalModel):
        return adapter.estimator_, adapter._table(train).reset_index(drop=True)
    model = getattr(adapter, "classifier_", None) or getattr(adapter, "estimator_", None)
    if model is None:
        raise ValueError(f"model {spec.label!r} ({spec.name}): its adapter {type(adapter).__name__} "
                         "holds no fitted estimator_ or classifier_ to export")
    return model, None


def export_models(config: CompareConfig, folds: pd.DataFrame, context: dict, out: Path) -> dict[str, str]:
    """Fit each model of ``config.export_models`` on all non-hold-out images and export it.

    Parameters
    ----------
    config : CompareConfig
        The run's configuration (``export_models`` lists model labels).
    folds : pd.DataFrame
        The run's folds (``sample_id, label, group, fold``); hold-out rows are left out.
    context : dict
        The runner's context: ``classes``, ``dataset``, ``images``, ``cells``, ``channel_index``
        and ``feature_config`` (the ``features.FeatureConfig`` of the run, for classical models).
    out : Path
        Results directory; models go to ``out/models/<label>/``.

    Returns
    -------
    dict
        ``{label: path of the MODEL_DIR}`` for every exported (or already current) model.
    """
    import serve
    from serve.model_dir import atomic_write_json

    from comparison.runner import _fold_data

    by_label = {m.label: m for m in config.models}
    train_ids, _ = fold_ids(folds, HOLDOUT)
    ds = context["dataset"]
    dtype = None if getattr(ds, "dtype", None) is None else str(ds.dtype)
    exported: dict[str, str] = {}
    for label in tqdm(config.export_models, desc="export", unit="model", disable=None):
        spec = by_label[label]
        target = out / "models" / label
        channels = _export_channels(spec, ds, config)
        digest = _settings_hash(spec, train_ids, channels, config, dtype)
        if _is_current(target, digest):
            log.info("model %s already exported to %s with these settings; skipping", label, target)
            exported[label] = str(target)
            continue
        if target.exists():
            log.warning("model %s in %s was exported with other settings; exporting again", label, target)
            shutil.rmtree(target)
        log.info("fitting %s on all %d non-hold-out images for export", label, len(train_ids))
        train = _fold_data(folds, train_ids, context["classes"], ds, context["images"], context["cells"])
        classical = model_kind(spec.name) == "classical"
        try:
            model, table = _fit_all(spec, train, context, config)
            serve.export_model(model, target, channels=channels, dtype=dtype,
                               feature_config=context.get("feature_config") if classical else None,
                               train_table=table)
        except ValueError as exc:
            raise ExportError(f"exporting model {label!r} ({spec.name}) to {target} failed: "
                              f"{type(exc).__name__}: {exc}") from exc
        stamp: dict[str, Any] = {"label": label, "name": spec.name, "settings_sha256": digest,
                                 "n_train": int(len(train_ids))}
        atomic_write_json(target / EXPORT_STAMP, stamp)  # last: marks it complete
        log.info("exported %s (%s) to %s", label, spec.name, target)
        exported[label] = str(target)
    return exported
