"""Context builders: one function per report section, each returning a plain dict for the template.

A section whose input file is absent carries a ``missing`` sentence instead of its content.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import yaml

from cellcompare.config import build
from cellcompare.reports import figures, images, tables
from cellcompare.reports.load import Results

__all__ = ["dataset_section", "methods_section", "results_section", "interpretation_section",
           "frame_rows", "weights_statement", "ReportOptions"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReportOptions:
    """Thresholds that keep the report readable with many classes (RxRx1 has 1,139).

    Attributes
    ----------
    heatmap_max_classes : int
        Above this many classes, confusion heatmaps become a list of top confusions and
        per-class recall bars become a distribution plot.
    top_confusions, top_features, worst_classes, qc_overlays : int
        Lengths of the corresponding lists.
    """

    heatmap_max_classes: int = 30
    top_confusions: int = 20
    top_features: int = 20
    worst_classes: int = 20
    qc_overlays: int = 4

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, *, source: str | None = None) -> "ReportOptions":
        """Build from a mapping (e.g. the ``report:`` block of config.yaml); unknown keys fail."""
        return build(cls, data, where="report", source=source)

def frame_rows(frame: pd.DataFrame) -> dict[str, Any]:
    """Columns and rows of ``(text, is_number)`` cells for the template's table macro."""
    return {"columns": [str(c) for c in frame.columns],
            "rows": [[(_fmt(v), isinstance(v, (int, float, np.number)) or "±" in str(v))
                      for v in row] for row in frame.itertuples(index=False)]}


def _fmt(value: Any) -> str:
    if isinstance(value, (float, np.floating)):
        return "n/a" if not np.isfinite(value) else f"{value:.{tables.DECIMALS}f}"
    return str(value)


def dataset_section(results: Results, opts: ReportOptions) -> dict[str, Any]:
    """Section 1: counts, channels, sample montage, dropped classes and skipped images."""
    info = results.metrics.get("dataset") or {}
    class_counts = info.get("class_counts") or {}
    if not class_counts and results.folds is not None:
        class_counts = results.folds["label"].astype(str).value_counts().to_dict()
    group_counts = info.get("group_counts") or {}
    if not group_counts and results.folds is not None:
        group_counts = results.folds["group"].astype(str).value_counts().to_dict()
    section: dict[str, Any] = {
        "root": info.get("root"), "layout": info.get("layout"),
        "n_images": info.get("n_images", sum(class_counts.values()) if class_counts else None),
        "channels": info.get("channels") or [], "n_classes": len(results.classes),
        "n_groups": len(group_counts), "dropped": info.get("dropped_classes") or [],
        "skipped": info.get("skipped") or [],
        "summary": _flatten(results.dataset_summary) if results.dataset_summary else None,
        "sizes": _count_text((results.dataset_summary or {}).get("image_sizes")),
        "dtypes": _count_text((results.dataset_summary or {}).get("dtypes")),
        "figures": [], "images_problem": None,
    }
    if class_counts or group_counts:
        section["figures"].append(figures.counts_figure(class_counts, group_counts,
                                                        max_bars=opts.heatmap_max_classes))
    dataset, problem = images.open_images(info.get("root"))
    section["images_problem"] = problem
    if dataset is not None:
        # a cell task's classes label cells: the montage shows the images by their own labels
        task = results.metrics.get("task") or results.metrics.get("labels") or {}
        shown = results.classes if task.get("level", "image") == "image" else None
        try:
            section["figures"].append(images.montage_figure(dataset, shown))
        except Exception as exc:  # a broken image must not stop the report
            log.warning("montage failed: %s", exc)
            section["images_problem"] = f"The sample montage failed ({type(exc).__name__}: {exc})."
    section["dataset"] = dataset
    return section


def _count_text(counts: dict[str, int] | None) -> str | None:
    """``{"512x512": 120}`` → ``"512x512 (120 images)"``, most common first."""
    if not counts:
        return None
    ordered = sorted(counts.items(), key=lambda kv: -kv[1])
    return "; ".join(f"{k} ({v} image{'s' if v != 1 else ''})" for k, v in ordered)


def _flatten(data: dict[str, Any], prefix: str = "") -> list[tuple[str, str]]:
    """Scalar leaves of a nested dict as ``(dotted.key, value)``; long lists are summarised."""
    out = []
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.extend(_flatten(value, name + ".") if len(value) <= 12 else
                       [(name, f"{len(value)} entries")])
        elif isinstance(value, list):
            out.append((name, ", ".join(map(str, value)) if len(value) <= 12
                        else f"{len(value)} entries"))
        else:
            out.append((name, _fmt(value)))
    return out


def weights_statement(weights: dict[str, Any] | None) -> str:
    """Say in words which initial weights a deep model used.

    Examples
    --------
    >>> weights_statement({"source": "ssl", "epochs": 20, "images": 40, "sha256": "ab" * 32})
    ... # doctest: +NORMALIZE_WHITESPACE
    "self-supervised (SimCLR, 20 epochs) on this fold's training images only; 40 images,
    backbone sha256 abababababab"
    >>> weights_statement({"source": "ssl", "epochs": 20, "images": 48, "use_test_images": True})
    ... # doctest: +NORMALIZE_WHITESPACE
    "self-supervised (SimCLR, 20 epochs) on this fold's training images, and also on its test images
    (transductive: the test images were seen, unlabeled, in pretraining); 48 images, backbone sha256
    not recorded"
    """
    if not weights:
        return "not recorded in metrics.json"
    source = weights.get("source")
    if source == "imagenet":
        return "ImageNet (torchvision IMAGENET1K_V1)"
    if source == "path":
        return f"file {weights.get('path')} (sha256 {weights.get('sha256') or 'not recorded'})"
    if source == "none":
        return "none: trained from random initialisation"
    if source == "ssl":
        text = f"self-supervised (SimCLR, {weights.get('epochs')} epochs) on this fold's training images"
        text += (", and also on its test images (transductive: the test images were seen, unlabeled, "
                 "in pretraining)" if weights.get("use_test_images") else " only")
        return (f"{text}; {weights.get('images')} images, backbone sha256 "
                f"{str(weights.get('sha256') or 'not recorded')[:12]}")
    return f"unrecognised weights record: {weights}"


def cell_table_statement(record: dict[str, Any] | None) -> str | None:
    """Say in words how ``compare`` read the per-cell table (``features.cell_table``)."""
    if not record:
        return None
    total, cap = record.get("n_cells"), record.get("cells_per_image")
    extracted = f"{total:,} cells extracted" if isinstance(total, int) else "cells extracted"
    reads = record.get("reads") or []
    if not reads:
        return f"not read: nothing in this run needed per-cell rows ({extracted})"
    how = ("every cell" if cap is None else
           f"at most {cap} cells per image, chosen with seed {record.get('seed')}")
    kept = "; ".join(f"{r.get('rows', 0):,} cells of {r.get('images', 0):,} images for "
                     f"{r.get('purpose', '?')}"
                     + ("" if r.get("columns") == "all" else f" ({r.get('columns')} columns)")
                     for r in reads)
    return f"{how}: {kept} ({extracted})"


def methods_section(results: Results, dataset: Any, opts: ReportOptions) -> dict[str, Any]:
    """Section 2: config, versions, features, segmentation QC, weights, hardware, folds."""
    metrics = results.metrics
    env = metrics.get("environment") or {}
    feats = metrics.get("features") or {}
    deep = [(name, weights_statement(info.get("weights")), _arch(name, info))
            for name, info in metrics["models"].items()
            if info.get("kind") == "deep" or info.get("weights")]
    section: dict[str, Any] = {
        "config": yaml.safe_dump(results.config, sort_keys=False) if results.config else None,
        "packages": sorted((env.get("packages") or {}).items()),
        "python": env.get("python"), "cpu": env.get("cpu"), "gpu": env.get("gpu"),
        "features": feats, "cell_table": cell_table_statement(feats.get("cell_table")),
        "weights": deep, "figures": [],
        "models": [(name, info.get("kind", "?"), _params(info.get("params")))
                   for name, info in metrics["models"].items()],
        "folds": metrics.get("folds") or {}, "fold_table": None,
    }
    counts = _cells_per_image(results)
    if counts is not None and len(counts):
        section["figures"].append(figures.cells_per_image_figure(counts))
    if results.qc_files:
        section["figures"].append(images.overlay_figure(results.qc_files, dataset,
                                                        n=opts.qc_overlays))
    if results.folds is not None:
        grouped = results.folds.groupby("fold")
        fold_table = pd.DataFrame({
            "images": grouped.size(), "classes": grouped["label"].nunique(),
            "groups": grouped["group"].apply(lambda g: ", ".join(sorted(map(str, g.unique())))),
        }).reset_index()
        fold_table["fold"] = fold_table["fold"].map(lambda f: "hold-out" if f == -1 else str(f))
        section["fold_table"] = frame_rows(fold_table)
    return section


def _arch(name: str, info: dict[str, Any]) -> str | None:
    arch = (info.get("params") or {}).get("arch")
    return None if arch is None or str(arch) == name else str(arch)


def _params(params: dict[str, Any] | None) -> str:
    return ", ".join(f"{k}={v}" for k, v in (params or {}).items()) or "defaults"


def _cells_per_image(results: Results) -> np.ndarray | None:
    """``Metadata_Object_Count`` of the per-image feature table, when it can be read."""
    features_dir = results.root / "features"
    if not features_dir.is_dir():
        return None
    from cellcompare.features import load_table  # never caught: a broken package must show

    try:
        table = load_table(features_dir, level="image", columns=["Metadata_Object_Count"])
        return table["Metadata_Object_Count"].to_numpy(dtype=float)
    except (OSError, ValueError, KeyError) as exc:  # the table may be absent, partial or older
        log.info("no per-image feature table for the cells-per-image plot: %s", exc)
        return None


def _p(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def factor_rows(factors: dict[str, Any] | None) -> dict[str, Any] | None:
    """The 2x2 of ``metrics.json`` ``factors`` (``comparison.factors``) as report rows: each
    cell's best model with its interval, and each factor's difference with its tests.

    Examples
    --------
    >>> rows = factor_rows({"metric": "accuracy", "answer": "...", "cells": {
    ...     "cellprofiler/classical": {"best": "svm", "models": [{"model": "svm", "estimate": 0.6,
    ...                                                           "low": 0.5, "high": 0.7}]},
    ...     "cellprofiler/network": {"best": None, "models": []},
    ...     "learned/classical": {"best": None, "models": []},
    ...     "learned/network": {"best": None, "models": []}}, "factors": {"head": None}})
    >>> rows["grid"][0]
    ['CellProfiler features', 'svm 0.600 (0.500 – 0.700)', 'not run: no network is trained on CellProfiler features']
    """
    if not factors:
        return None

    def cell(key: str) -> str:
        entry = factors["cells"].get(key) or {}
        if not entry.get("best"):
            return ("not run: no network is trained on CellProfiler features" if key == "cellprofiler/network"
                    else "no model in this cell")
        m = entry["models"][0]
        others = len(entry["models"]) - 1
        more = f" (+{others} more)" if others else ""
        return f"{m['model']} {m['estimate']:.3f} ({m['low']:.3f} – {m['high']:.3f}){more}"

    grid = [["CellProfiler features", cell("cellprofiler/classical"), cell("cellprofiler/network")],
            ["learned representation", cell("learned/classical"), cell("learned/network")]]
    tests = []
    for name, f in factors["factors"].items():
        if f is None:
            tests.append([name, "not run (a level of this factor has no model)", "", "", ""])
            continue
        interval = (f"{f['estimate']:+.3f} ({f['low']:+.3f} – {f['high']:+.3f})" if "estimate" in f
                    else "no bootstrap interval")
        tests.append([name, f"{f['model_a']} − {f['model_b']}", interval, _p(f.get("t_test_p")),
                      _p(f.get("mcnemar_p"))])
    return {"metric": factors["metric"], "grid": grid, "tests": tests, "answer": factors["answer"]}


def results_section(results: Results, opts: ReportOptions) -> dict[str, Any]:
    """Section 3: summary table, bootstrap intervals, fold plot, tests, confusions, recall, cost."""
    summary = tables.summary_frame(results)
    folds = results.fold_table()
    top_k = results.metrics.get("top_k", 3)
    table = tables.summary_table(summary, results.metric_names)
    many = len(results.classes) > opts.heatmap_max_classes
    section: dict[str, Any] = {
        "table": table, "labels": [tables.metric_label(m, top_k) for m in table.metrics],
        "n_folds": folds["fold"].nunique() if "fold" in folds else 0,
        "many_classes": many, "figures": [], "confusions": [], "recall_table": None,
        "worst": None, "comparisons": tables.comparison_rows(results), "cost": None,
        "factors": factor_rows(results.metrics.get("factors")),
    }
    if not folds.empty:
        section["figures"].append(figures.fold_scores_figure(folds, table.metrics,
                                                             labels=section["labels"]))
    for model, info in results.metrics["models"].items():
        mats = results.confusion_matrices(model)
        if not mats:
            continue
        entry = {"model": model, "figure": None, "top": None}
        if many:
            counts = np.sum(mats, axis=0, dtype=float)
            entry["top"] = frame_rows(tables.top_confusions(counts, results.classes,
                                                             opts.top_confusions))
        else:
            entry["figure"] = figures.confusion_figure(model, figures.normalised_confusion(mats),
                                                       results.classes)
        section["confusions"].append(entry)
    recall = tables.recall_long(results)
    if not recall.empty:
        section["recall_figure"] = figures.recall_figure(recall,
                                                         max_classes=opts.heatmap_max_classes)
        wide = recall.pivot(index="class", columns="model", values="recall")
        wide = wide[[m for m in results.model_names if m in wide.columns]]
        section["recall_table"] = frame_rows(wide.reset_index())
        worst = wide.mean(axis=1).sort_values().head(opts.worst_classes).index
        section["worst"] = frame_rows(wide.loc[worst].reset_index())
    if {"fit_seconds", "predict_seconds", "peak_memory_mb"} & set(folds.columns):
        section["cost_figure"] = figures.cost_figure(folds)
        section["cost"] = frame_rows(tables.cost_table(folds))
    boot = tables.bootstrap_frame(results)
    pairwise = tables.pairwise_frame(results)
    section["bootstrap"] = None if boot is None else frame_rows(boot)
    section["bootstrap_info"] = results.metrics.get("bootstrap") or {}
    section["pairwise"] = None if pairwise is None else frame_rows(pairwise)
    section["pairwise_metric"] = tables.metric_label(
        (results.metrics.get("pairwise") or {}).get("metric", "accuracy"), top_k)
    well_table = tables.wells_frame(results)
    section["wells"] = None if well_table is None else frame_rows(well_table)
    section["wells_info"] = results.metrics.get("wells") or {}
    section["summary_frame"] = summary
    return section


def interpretation_section(results: Results, opts: ReportOptions) -> dict[str, Any]:
    """Section 4: top features per model with family; true class differences when synthetic."""
    section: dict[str, Any] = {"models": [], "truth": None}
    if results.class_differences:
        section["truth"] = [
            (cls, str((info or {}).get("description", "")),
             ", ".join(f"{k}={v}" for k, v in ((info or {}).get("params") or {}).items()))
            for cls, info in results.class_differences.items()]
    if results.importance is None:
        return section
    for model in dict.fromkeys(results.importance["model"]):
        for score in ("gain", "permutation"):
            top = tables.top_features(results.importance, model, score, opts.top_features)
            if top.empty:
                continue
            section["models"].append({
                "model": model, "score": score,
                "figure": figures.importance_figure(top, model, score),
                "table": frame_rows(top[["feature", "family", "gain", "permutation"]]),
            })
    return section
