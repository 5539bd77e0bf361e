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
from cellcompare.comparison.adapters import model_kind
from cellcompare.comparison.celltable import cell_table_key, example_cells
from cellcompare.comparison.config import CompareConfig, ModelSpec, check_models
from cellcompare.comparison.context import RunContext
from cellcompare.comparison.export import export_models
from cellcompare.comparison.factors import factor_pairs, factor_table
from cellcompare.comparison.representation import finetuned_tables, write_finetuned
from cellcompare.comparison.metrics import compute_metrics
from cellcompare.comparison.preflight import preflight
from cellcompare.comparison.prepare import build_task, dataset_info, extract_features, prepare_dataset
from cellcompare.comparison.results import (
    comparisons,
    environment,
    metric_order,
    model_summary,
    summary_frame,
    write_parquet,
)
from cellcompare.comparison.splits import HOLDOUT, folds_for
from cellcompare.comparison.stages import StageRecorder
from cellcompare.comparison.uncertainty import uncertainty
from cellcompare.features.plan import plan_extraction
from cellcompare.features.qc import segmentation_qc
from cellcompare.progress import progress_bar

__all__ = ["run", "run_units", "MEMORY_METHOD", "UnitError"]

log = logging.getLogger(__name__)
#: How ``peak_memory_mb`` is measured (also written to metrics.json).
MEMORY_METHOD = ("tracemalloc peak of Python-heap allocations during fit + predict (numpy buffers "
                 "included; torch/xgboost native allocations are not seen)")


class UnitError(ValueError):
    """A (model, fold) unit failed; the message names both. Finished units are kept (rerun resumes)."""


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
              **_representation_record(adapter),
              "n_train": len(train), "n_test": len(test)}
    preds = pd.DataFrame({"sample_id": test.sample_ids, "fold": fold, "model": spec.label,
                          "true_label": test.y})
    for j, c in enumerate(context.classes):
        preds[f"proba_{c}"] = proba[:, j]
    record.update(explain.training_record(adapter))
    if adapter.kind == "deep":
        explain.write_gradcam_examples(Path(config.output), spec.label, fold, adapter, test, proba,
                                       context.classes)
    if spec.label in config.embed_models:  # this fold's network embeds this fold's test images
        image, cells = finetuned_tables(adapter, test, context.image_metadata, fold)
        json_path, _ = _unit_paths(Path(config.output), spec.label, fold)
        write_parquet(image, json_path.with_suffix(".embeddings.image.parquet"))
        if cells is not None:
            write_parquet(cells, json_path.with_suffix(".embeddings.cells.parquet"))
    importance = None
    if config.feature_importance != "none" and spec.name == "xgboost" and spec.representation == "cellprofiler":
        importance = adapter.feature_importance(test, config.feature_importance == "permutation")
    return record, preds, importance


def _representation_record(adapter: Any) -> dict:
    """A classical adapter's ``representation`` record (``comparison.representation``), or none."""
    representation = getattr(adapter, "representation", None)
    return representation.record() if representation is not None else {}


def _spec_key(spec: ModelSpec, config: CompareConfig, data: str = "") -> dict:
    """What a finished unit depends on (checked on resume); ``data`` is ``RunContext.data_digest``."""
    learned = {} if spec.representation == "cellprofiler" else {
        "representation": spec.representation, "embedding": spec.embedding}  # CP keys as before
    if spec.label in config.embed_models:  # its units also wrote embeddings
        learned["embeds"] = True
    return json.loads(json.dumps({"name": spec.name, "granularity": spec.granularity, **learned,
                                  "params": spec.params, "seed": config.seed, "top_k": config.top_k,
                                  "features": config.features, "data": data,
                                  **cell_table_key(spec, config)}, default=str))


def run_units(context: RunContext, out: Path, stages: StageRecorder | None = None) -> list[dict]:
    """Run every unfinished (model, fold) unit; finished ones are read back (resume).

    With ``stages``, each model's units are measured as stage ``units/<label>``.
    """
    stages = stages or StageRecorder(out)
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
            with stages.stage(f"units/{spec.label}"):
                record, preds, importance = _run_unit(spec, k, context)
        except ValueError as exc:
            raise UnitError(f"model {spec.label!r} ({spec.name}) failed on fold {k}: "
                            f"{type(exc).__name__}: {exc}") from exc
        write_parquet(preds, pred_path)
        if importance is not None:
            imp = importance.assign(model=spec.label, fold=k)
            write_parquet(imp, out / "units" / f"{spec.label}__fold{k}.importance.parquet")
        record["spec"] = _spec_key(spec, config, data)
        atomic.write_json(json_path, record)  # written last: its presence marks the unit finished
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
                              "representation": spec.representation if model_kind(spec.name) == "classical"
                              else "learned", "embedding": next(
                                  (r.get("embedding") for r in mine if r.get("embedding")), None),
                              "weights": weights, "notes": notes, "folds": mine,
                              "summary": model_summary(cv)}
    preds = pd.concat([pd.read_parquet(_unit_paths(out, r["model"], r["fold"])[1]) for r in records],
                      ignore_index=True)
    write_parquet(preds, out / "predictions.parquet")
    return {"models": models,
            "comparisons": comparisons(models, preds, list(classes))}


def _write_embeddings(config: CompareConfig, records: list[dict], out: Path) -> dict[str, str]:
    """``{label: folder}`` of each ``embed_models`` network's out-of-fold embedding tables,
    assembled from its units' parts."""
    written = {}
    for label in config.embed_models:
        parts = []
        for r in sorted((r for r in records if r["model"] == label), key=lambda r: r["fold"]):
            json_path, _ = _unit_paths(out, label, r["fold"])
            image, cells = (json_path.with_suffix(f".embeddings.{level}.parquet") for level in ("image", "cells"))
            if not image.is_file():
                raise UnitError(f"unit {label} fold {r['fold']} has no embeddings ({image} missing); "
                                f"delete {json_path} to run it again")
            parts.append((pd.read_parquet(image), pd.read_parquet(cells) if cells.is_file() else None))
        written[label] = str(write_finetuned(out, label, parts))
        log.info("out-of-fold embeddings of %s written to %s", label, written[label])
    return written


def _write_importance(out: Path) -> None:
    parts = sorted((out / "units").glob("*.importance.parquet"))
    if not parts:
        return
    table = pd.concat([pd.read_parquet(p) for p in parts], ignore_index=True)
    cols = ["model", "fold", "feature", "family", "gain", "permutation"]
    table = table[[c for c in cols if c in table.columns]]
    with atomic_path(out / "feature_importance.csv") as tmp:
        table.to_csv(tmp, index=False)


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
    # one validation pass before any work (seconds): every model's params and weights, the
    # data listed, the counts against each model's needs; no result is written before it passes
    check_models(config.models)
    out = Path(config.output)
    stages = StageRecorder(out)
    with stages.stage("dataset"):
        ds = prepare_dataset(config)
        checked = preflight(config, ds.index)
        out.mkdir(parents=True, exist_ok=True)
        atomic.write_text(out / "config.yaml", yaml.safe_dump(config.to_dict(), sort_keys=False))
        data_info = dataset_info(ds, config, out)
    config = checked.config
    needs_features = config.labels.level == "cell" or any(
        model_kind(m.name) != "deep" and m.representation == "cellprofiler" for m in config.models)
    fconfig, segmentation = config.feature_config(), {}
    if needs_features or any(m.granularity == "cell" or m.embedding.get("input", "cells") == "cells"
                             and m.representation != "cellprofiler" for m in config.models):
        fconfig, segmentation = plan_extraction(ds, fconfig, out / "features")  # once per run
    images = None
    feature_info: dict[str, Any] = {"preset": None, "n_features": 0, "cells_per_image": {}}
    if needs_features:
        with stages.stage("extraction"):
            images, feature_info = extract_features(config, out, fconfig, segmentation)
        segmentation["qc"] = segmentation_qc(images, fconfig.diameter, whole_object=fconfig.whole_object)
    with stages.stage("tables"):
        task = build_task(config, ds, out, feature_config=fconfig, image_table=images,
                          feature_info=feature_info, class_counts=data_info["class_counts"])
        if task.level == "cell":  # its units exist now: the labelled cells
            checked = preflight(config, task.index, task=task)
        folds = folds_for(out / "folds.csv", task.index, task.folds, config.seed,
                          unit_name=task.unit_name)
    context = RunContext(config=config, dataset=ds, task=task, folds=folds,
                         feature_config=fconfig, stages=stages)
    records = run_units(context, out, stages)
    with stages.stage("results"):
        _results(config, context, records, checked, data_info, feature_info, segmentation)
    _report(out, config, stages)
    return out


def _results(config: CompareConfig, context: RunContext, records: list[dict], checked: Any,
             data_info: dict, feature_info: dict, segmentation: dict) -> None:
    """Everything after the units: predictions, comparisons, metrics.json, summary.csv."""
    out, task, ds = Path(config.output), context.task, context.dataset
    collected = _collect(config, records, out, task.classes)
    for label, entry in collected["models"].items():
        entry["notes"] = sorted(set(entry["notes"]) | set(checked.notes(label)))
    metric_names = metric_order(task.class_counts)
    collected.update(uncertainty(collected["models"], collected["comparisons"],
                                 pd.read_parquet(out / "predictions.parquet"), task.classes, config.top_k,
                                 metric=metric_names[0], seed=config.seed, **task.units,
                                 pairs=factor_pairs(collected["models"], metric_names[0])))
    factors = factor_table(collected["models"], collected["bootstrap"], collected["comparisons"],
                           metric_names[0])
    if factors is not None:
        collected["factors"] = factors
    collected["wells"] = task.wells(out, config.top_k)
    if config.export_models:
        collected["exported_models"] = export_models(context, out)
    if config.embed_models:
        collected["embeddings"] = _write_embeddings(config, records, out)
    _feature_examples(config, out, task.cell_table, ds, feature_info.get("cell_table"))
    metrics = {"top_k": config.top_k, "metric_names": metric_names,
               "classes": list(task.classes), "labels": task.info, "task": task.record(),
               "dataset": data_info,
               "folds": {"n_splits": config.folds.n_splits, "group_column": config.folds.group_column,
                         "seed": config.seed, "holdout_fraction": config.folds.holdout_fraction},
               "environment": environment(), "memory_method": MEMORY_METHOD,
               "features": feature_info, "segmentation": segmentation, "preflight": checked.report,
               **collected}
    cell_files = task.write_fractions(out, metrics)
    if cell_files:
        metrics["cell_files"] = cell_files
    atomic.write_json(out / "metrics.json", metrics)
    task.write_gallery(out, metrics, context.gallery_crops)
    with atomic_path(out / "summary.csv") as tmp:
        summary_frame(collected["models"]).to_csv(tmp, index=False)
    source = Path(config.dataset.path) / "class_differences.json"
    if source.is_file():
        shutil.copyfile(source, out / "class_differences.json")


def _report(out: Path, config: CompareConfig, stages: StageRecorder) -> None:
    """``report.html`` (``reports.build_report``; its import is lazy, never caught), then
    metrics.json's ``stages`` (:mod:`comparison.stages`), the report's own included."""
    if config.report:
        from cellcompare.reports import build_report

        with stages.stage("report"):
            path = build_report(out)
        log.info("report written to %s", path)
    metrics = json.loads((out / "metrics.json").read_text())
    metrics["stages"], metrics["stage_method"] = stages.record(), stages.method
    atomic.write_json(out / "metrics.json", metrics)
