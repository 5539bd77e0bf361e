"""``run(config)``: dataset -> features -> folds -> every (model, fold) unit -> results -> report."""

from __future__ import annotations

import json
import logging
import resource
import shutil
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from cellcompare import atomic
from cellcompare.atomic import atomic_path
from cellcompare.comparison import explain
from cellcompare.comparison.celltable import (
    cell_table_key,
    cell_table_record,
    example_cells,
    read_cells,
    reads_cells,
)
from cellcompare.comparison.config import CompareConfig, ConfigError, ModelSpec
from cellcompare.comparison.context import RunContext
from cellcompare.comparison.export import export_models
from cellcompare.comparison.gallery import write_cell_gallery
from cellcompare.comparison.labels import prepare_cell_task
from cellcompare.comparison.metrics import compute_metrics
from cellcompare.comparison.models import model_kind
from cellcompare.comparison.preflight import preflight
from cellcompare.comparison.results import (
    comparisons,
    environment,
    metric_order,
    model_summary,
    summary_frame,
    write_json,
    write_parquet,
)
from cellcompare.comparison.splits import HOLDOUT, folds_for
from cellcompare.comparison.uncertainty import uncertainty, well_units
from cellcompare.comparison.wells import well_results
from cellcompare.progress import progress_bar

__all__ = ["run", "prepare_dataset", "run_units", "MEMORY_METHOD", "UnitError"]

log = logging.getLogger(__name__)
#: How ``peak_memory_mb`` is measured (also written to metrics.json).
MEMORY_METHOD = ("tracemalloc peak of Python-heap allocations during fit + predict (numpy buffers "
                 "included; torch/xgboost native allocations are not seen)")


class UnitError(ValueError):
    """A (model, fold) unit failed; the message names both. Finished units are kept (rerun resumes)."""


def prepare_dataset(config: CompareConfig):
    """Open the configured dataset, writing the synthetic one first when asked and absent."""
    section = config.dataset
    root = Path(section.path)
    if not root.exists() and section.synth is not None:
        from cellcompare.datasets.synth import make_synthetic

        log.info("writing the synthetic %s dataset into %s", section.synth.kind, root)
        make_synthetic(root, section.synth)
    return section.open()


def _features(config: CompareConfig, out: Path) -> tuple[pd.DataFrame, dict]:
    """Run (or resume) the feature extraction; return the per-image table and its record.

    The per-cell table is not read here (``celltable.read_cells`` reads it when needed): only
    its schema, for the number of per-cell features.
    """
    from cellcompare.features import load_table, run_extraction
    from cellcompare.features.tables import open_table

    fconfig = _feature_config(config)
    folder = out / "features"
    options = config.dataset.open_options()
    _check_manifest(folder / "manifest.json", fconfig.to_dict(), options)
    done = len(list((folder / "image").glob("*.parquet"))) if (folder / "image").is_dir() else 0
    start = time.perf_counter()
    run_extraction(config.dataset.path, folder, fconfig, jobs=config.jobs, dataset_options=options)
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


def _feature_examples(config: CompareConfig, out: Path, cells: pd.DataFrame | None, ds,
                      record: dict | None) -> None:
    """``feature_importance.csv``, then crops of the cells at both ends of each top feature.

    ``cells`` read for the models are reused; otherwise only the columns the examples show
    are read (``record`` is ``features.cell_table``; None when no features were extracted).
    """
    _write_importance(out)
    if not (out / "feature_importance.csv").is_file() or record is None:
        return
    importance = pd.read_csv(out / "feature_importance.csv")
    if cells is None:
        cells = example_cells(config, out / "features", importance, record)
    explain.write_feature_examples(out, importance, cells, ds)


def _extraction_timing(out: Path, n_images: int, seconds: float, jobs: int) -> dict | None:
    """Wall seconds per image of the feature extraction, kept from the run that extracted."""
    path = out / "extraction_timing.json"
    if n_images <= 0:
        return json.loads(path.read_text()) if path.is_file() else None
    timing = {"images": int(n_images), "seconds": seconds, "jobs": int(jobs),
              "seconds_per_image": seconds / n_images}
    write_json(timing, path)
    return timing


def _feature_config(config: CompareConfig):
    """The ``features.FeatureConfig`` of the run (``dataset.channels`` selects its channels)."""
    from cellcompare.features import FeatureConfig

    params = dict(config.features)
    if config.dataset.channels is not None:
        params.setdefault("channels", list(config.dataset.channels))
    return FeatureConfig.from_dict(params)


def _check_manifest(path: Path, wanted: dict, dataset_options: dict | None = None) -> None:
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


def _unit_paths(out: Path, label: str, fold: int) -> tuple[Path, Path]:
    stem = f"{label}__fold{fold}"
    return out / "units" / f"{stem}.json", out / "units" / f"{stem}.parquet"


def _run_unit(spec: ModelSpec, fold: int, context: RunContext):
    config = context.config
    adapter = context.adapter(spec)
    train, test = context.split(fold)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    start = time.perf_counter()
    adapter.fit(train)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    proba = adapter.predict_proba(test)
    predict_s = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    rss_delta = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
    record = {"model": spec.label, "name": spec.name, "kind": adapter.kind, "fold": fold,
              **compute_metrics(test.y, proba, context.classes, config.top_k),
              "fit_seconds": fit_s, "predict_seconds": predict_s, "peak_memory_mb": peak,
              "max_rss_increase_mb": rss_delta, "chosen_params": adapter.chosen_params(),
              "weights": adapter.weights, "notes": list(adapter.notes),
              "n_train": len(train), "n_test": len(test)}
    preds = pd.DataFrame({"sample_id": test.sample_ids, "fold": fold, "model": spec.label,
                          "true_label": test.y})
    for j, c in enumerate(context.classes):
        preds[f"proba_{c}"] = proba[:, j]
    record.update(explain.training_record(adapter))
    if adapter.kind == "deep":
        explain.write_gradcam_examples(Path(config.output), spec.label, fold, adapter, test, proba,
                                       context.classes)
    importance = None
    if config.feature_importance != "none" and spec.name == "xgboost":
        importance = adapter.feature_importance(test, config.feature_importance == "permutation")
    return record, preds, importance


def _spec_key(spec: ModelSpec, config: CompareConfig, data: str = "") -> dict:
    """What a finished unit depends on (checked on resume); ``data`` is ``RunContext.data_digest``."""
    return json.loads(json.dumps({"name": spec.name, "granularity": spec.granularity,
                                  "params": spec.params, "seed": config.seed, "top_k": config.top_k,
                                  "features": config.features, "data": data,
                                  **cell_table_key(spec, config)}, default=str))


def run_units(context: RunContext, out: Path) -> list[dict]:
    """Run every unfinished (model, fold) unit; finished ones are read back (resume)."""
    config, folds = context.config, context.folds
    (out / "units").mkdir(parents=True, exist_ok=True)
    fold_list = sorted(k for k in folds.fold.unique() if k >= 0)
    if (folds.fold == HOLDOUT).any():
        fold_list.append(HOLDOUT)
    units = [(spec, k) for spec in config.models for k in fold_list]
    data = context.data_digest
    records = []
    for spec, k in progress_bar(units, desc="units", unit="unit"):
        json_path, pred_path = _unit_paths(out, spec.label, k)
        if json_path.exists() and pred_path.exists():
            done = json.loads(json_path.read_text())
            if done.get("spec") == _spec_key(spec, config, data):
                log.info("skipping finished unit %s fold %d", spec.label, k)
                records.append(done)
                continue
            log.warning("unit %s fold %d was run with other settings; running it again", spec.label, k)
        log.info("fitting %s on fold %d", spec.label, k)
        try:
            record, preds, importance = _run_unit(spec, k, context)
        except ValueError as exc:
            raise UnitError(f"model {spec.label!r} ({spec.name}) failed on fold {k}: "
                            f"{type(exc).__name__}: {exc}") from exc
        write_parquet(preds, pred_path)
        if importance is not None:
            imp = importance.assign(model=spec.label, fold=k)
            write_parquet(imp, out / "units" / f"{spec.label}__fold{k}.importance.parquet")
        record["spec"] = _spec_key(spec, config, data)
        write_json(record, json_path)  # written last: its presence marks the unit finished
        records.append(record)
    return records


def _collect(config: CompareConfig, records: list[dict], out: Path, classes: tuple[str, ...]) -> dict:
    models: dict[str, Any] = {}
    for spec in config.models:
        mine = sorted((r for r in records if r["model"] == spec.label), key=lambda r: r["fold"])
        cv = [r for r in mine if r["fold"] >= 0]
        weights = next((r.get("weights") for r in mine if r.get("weights")), None)
        notes = sorted({n for r in mine for n in r.get("notes", [])})
        models[spec.label] = {"name": spec.name, "kind": model_kind(spec.name),
                              "granularity": spec.granularity, "params": spec.params,
                              "weights": weights, "notes": notes, "folds": mine,
                              "summary": model_summary(cv)}
    preds = pd.concat([pd.read_parquet(_unit_paths(out, r["model"], r["fold"])[1]) for r in records],
                      ignore_index=True)
    write_parquet(preds, out / "predictions.parquet")
    return {"models": models,
            "comparisons": comparisons(models, preds, list(classes))}


def _write_importance(out: Path) -> None:
    parts = sorted((out / "units").glob("*.importance.parquet"))
    if not parts:
        return
    table = pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
    cols = ["model", "fold", "feature", "family", "gain", "permutation"]
    table = table[[c for c in cols if c in table.columns]]
    with atomic_path(out / "feature_importance.csv") as tmp:
        table.to_csv(tmp, index=False)


def _dataset_info(ds, config: CompareConfig, out: Path) -> dict:
    try:
        from cellcompare.datasets.explore import summarize

        summary = summarize(ds)
    except ImportError:
        summary = {"root": str(ds.root), "layout": ds.layout, "n_images": len(ds),
                   "channels": list(ds.channel_names), "skipped": []}
    write_json(summary, out / "dataset_summary.json")
    index_labels = pd.Series(ds.labels).astype(str)
    dropped = sorted(set(config.dataset.exclude_classes))
    return {"root": str(ds.root), "layout": ds.layout, "n_images": int(len(ds)),
            "channels": list(ds.channel_names),
            "class_counts": {str(k): int(v) for k, v in index_labels.value_counts().sort_index().items()},
            "group_counts": summary.get("group_counts", {}), "dropped_classes": dropped,
            "skipped": [{"path": s.path, "reason": s.reason} for s in ds.skipped]}


def _channel_index(ds, config: CompareConfig) -> tuple[int, ...] | None:
    wanted = config.dataset.channels
    if wanted is None:
        return None
    names = list(ds.channel_names)
    missing = [c for c in wanted if c not in names]
    if missing:
        raise ConfigError(f"dataset.channels names {missing} that {ds.root} does not have; "
                          f"its channels are {names}")
    return tuple(names.index(c) for c in wanted)


def run(config: CompareConfig) -> Path:
    """Run the whole comparison and return the results directory.

    Parameters
    ----------
    config : CompareConfig
        From :func:`comparison.load_config`.

    Returns
    -------
    Path
        The results directory (``config.output``), laid out as in docs/CONTRACTS.md.
    """
    out = Path(config.output)
    out.mkdir(parents=True, exist_ok=True)
    atomic.write_text(out / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))
    ds = prepare_dataset(config)
    dataset_info = _dataset_info(ds, config, out)
    checked = preflight(config, ds.index)  # seconds; before features: counts vs each model's needs
    config = checked.config
    classes = tuple(str(c) for c in ds.classes)
    cell_level = config.labels.level == "cell"  # the gate / annotations need the cell table
    needs_features = cell_level or any(model_kind(m.name) != "deep" for m in config.models)
    images = cells = None
    feature_info: dict[str, Any] = {"preset": None, "n_features": 0, "cells_per_image": {}}
    if needs_features:
        images, feature_info = _features(config, out)
        if any(reads_cells(m, config.labels.level) for m in config.models):
            cells = read_cells(config, out / "features", feature_info["cell_table"], "models")
    channel_index, index, task = _channel_index(ds, config), ds.index, None
    if cell_level:
        task = prepare_cell_task(config, ds, cells, segmentation=_feature_config(config),
                                 channel_index=channel_index, out=out)
        classes, index, images, cells, channel_index = (task.classes, task.index, None, task.cell_table,
                                                        task.channel_index)
    folds = folds_for(out / "folds.csv", index, task.folds if task else config.folds, config.seed)
    context = RunContext(config=config, dataset=ds, classes=classes, folds=folds,
                         image_table=images, cell_table=cells, channel_index=channel_index,
                         feature_config=_feature_config(config) if needs_features else None,
                         level=config.labels.level)
    class_counts = task.info["class_counts"] if task else dataset_info["class_counts"]
    records = run_units(context, out)
    collected = _collect(config, records, out, classes)
    for label, entry in collected["models"].items():
        entry["notes"] = sorted(set(entry["notes"]) | set(checked.notes(label)))
    collected.update(uncertainty(collected["models"], collected["comparisons"],
                                 pd.read_parquet(out / "predictions.parquet"), classes, config.top_k,
                                 metric=metric_order(class_counts)[0],
                                 seed=config.seed,
                                 **(well_units(index) if task is None else {"units": None, "unit": "cell"})))
    collected["wells"] = (well_results(out, index, classes, config.top_k) if task is None else
                          {"available": False, "reason": "labels.level: cell scores cells, not wells"})
    if config.export_models:
        collected["exported_models"] = export_models(context, out)
    _feature_examples(config, out, cells, ds, feature_info.get("cell_table"))
    metrics = {"top_k": config.top_k, "metric_names": metric_order(class_counts),
               "classes": list(classes), "labels": task.info if task else {"level": "image"},
               "dataset": dataset_info,
               "folds": {"n_splits": config.folds.n_splits, "group_column": config.folds.group_column,
                         "seed": config.seed, "holdout_fraction": config.folds.holdout_fraction},
               "environment": environment(), "memory_method": MEMORY_METHOD,
               "features": feature_info, "preflight": checked.report, **collected}
    write_json(metrics, out / "metrics.json")
    if task is not None:
        write_cell_gallery(out, metrics, context.gallery_crops())
    with atomic_path(out / "summary.csv") as tmp:
        summary_frame(collected["models"]).to_csv(tmp, index=False)
    source = Path(config.dataset.path) / "class_differences.json"
    if source.is_file():
        shutil.copyfile(source, out / "class_differences.json")
    _report(out, config)
    return out


def _report(out: Path, config: CompareConfig) -> None:
    if not config.report:
        return
    try:
        from cellcompare.reports import build_report
    except ImportError as exc:
        log.warning("reports/ is not importable (%s); no HTML report written, results are in %s", exc, out)
        return
    path = build_report(out)
    log.info("report written to %s", path)
