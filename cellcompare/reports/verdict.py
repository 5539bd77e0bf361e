"""The report's first box: the question, the answer in one sentence, caveats, and cost per image.

Every number comes from ``metrics.json``: the ``headline`` record written by
``comparison.stats.uncertainty`` (models, bootstrap intervals, paired tests), the dataset's class
counts, the fold records (``fit_seconds``, ``predict_seconds``, ``n_train``, ``n_test``), the
feature extraction timing and the environment.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from cellcompare.reports.load import Results
from cellcompare.reports.sections import weights_statement

__all__ = ["IMBALANCE_RATIO", "first_box", "caveats", "cost_rows", "hardware", "segmentation_caveats",
           "units_per_class"]

#: Shown only for results without a headline (the run states its own question).
FALLBACK_QUESTION = "Which approach, CellProfiler features or a deep network, separates these classes better?"

#: Largest / smallest class size above which the classes count as imbalanced.
IMBALANCE_RATIO = 1.5


def caveats(results: Results) -> list[dict[str, Any]]:
    """What changes how to read the answer: starting weights, folds, units per class, imbalance.

    Units per class and the imbalance are the task's (:func:`units_per_class`: cells for a
    cell task, images for an image task).

    Returns
    -------
    list of dict
        ``{"key", "text", "warn"}``; ``warn`` marks a caveat that weakens the answer (random
        initial weights, fewer than 5 folds, fewer than 30 units in a class, imbalance).
    """
    metrics = results.metrics
    out = []
    for name, info in metrics["models"].items():
        if info.get("kind") != "deep" and info.get("representation", "cellprofiler") in ("cellprofiler", "learned"):
            continue  # a classical head on embeddings has its network's weights too
        source = (info.get("weights") or {}).get("source")
        text = f"{name} starting weights: {weights_statement(info.get('weights'))}"
        if source == "none":
            text += (" - without ImageNet pre-training a deep model on a small data set is "
                     "expected to do worse than it could")
        out.append({"key": f"weights.{name}", "text": text, "warn": source != "imagenet"})
    folds = metrics.get("folds") or {}
    n_splits = folds.get("n_splits")
    group = folds.get("group_column")
    if n_splits:
        text = (f"{n_splits} cross-validation folds" +
                (f", grouped by {group} (no {group} in both training and test)" if group else ""))
        if n_splits < 5:
            text += "; with so few folds the per-fold tests have little power"
        out.append({"key": "folds", "text": text, "warn": n_splits < 5})
    unit, counts = units_per_class(metrics)
    if counts:
        low, high = min(counts.values()), max(counts.values())
        per = f"{low} {unit} per class" if low == high else f"{low} to {high} {unit} per class"
        out.append({"key": f"{unit}_per_class", "text": f"{len(counts)} classes, {per}",
                    "warn": low < 30})
        ratio = high / low if low else float("inf")
        metric = (metrics.get("headline") or {}).get("metric")
        if ratio > IMBALANCE_RATIO and metric == "balanced_accuracy":
            text = (f"classes are imbalanced (largest / smallest = {ratio:.1f}): the answer uses "
                    "balanced accuracy, which weighs every class equally")
        elif ratio > IMBALANCE_RATIO:
            text = (f"classes are imbalanced (largest / smallest = {ratio:.1f}): accuracy favours "
                    "the large classes, so read balanced accuracy too")
        else:
            text = f"classes are balanced (largest / smallest = {ratio:.1f})"
        out.append({"key": "imbalance", "text": text, "warn": ratio > IMBALANCE_RATIO})
    return out + segmentation_caveats(metrics.get("segmentation") or {})


def segmentation_caveats(record: dict[str, Any]) -> list[dict[str, Any]]:
    """What the segmentation chose, and what its QC doubts (``metrics.json`` ``segmentation``).

    Examples
    --------
    >>> from cellcompare.reports.verdict import segmentation_caveats
    >>> record = {"dna_channel": {"name": "D", "chosen_by": "signal"},
    ...           "diameter": {"range": [9.4, 37.6], "chosen_by": "estimated"},
    ...           "warnings": [], "qc": {"caveats": ["segmentation QC flags 3 of 9 images"]}}
    >>> [(c["key"], c["warn"]) for c in segmentation_caveats(record)]
    [('segmentation', False), ('segmentation.qc.0', True)]
    >>> segmentation_caveats(record)[0]["text"]
    "nuclei segmented on channel 'D' (chosen by signal), diameter 9.4-37.6 px (estimated from the images)"
    """
    dna = record.get("dna_channel") or {}
    if not dna:
        return []
    how = {"config": "as configured", "name": "chosen by name", "signal": "chosen by signal",
           "name and signal": "chosen by name and signal", "only channel": "the only channel"}
    text = f"nuclei segmented on channel {dna.get('name')!r} ({how.get(dna.get('chosen_by'), dna.get('chosen_by'))})"
    diameter = record.get("diameter") or {}
    if diameter.get("range"):
        low, high = diameter["range"]
        source = "estimated from the images" if diameter.get("chosen_by") == "estimated" else "as configured"
        text += f", diameter {low:g}-{high:g} px ({source})"
    elif diameter.get("chosen_by") == "masks":
        text = "label images given with the data (features.masks)"
    out = [{"key": "segmentation", "text": text, "warn": False}]
    doubts = list(record.get("warnings") or []) + list((record.get("qc") or {}).get("caveats") or [])
    out += [{"key": f"segmentation.qc.{i}", "text": t, "warn": True} for i, t in enumerate(doubts)]
    return out


def units_per_class(metrics: dict[str, Any]) -> tuple[str, dict[str, int]]:
    """What the run classified and how many per class: ``("cells", {...})`` for a cell task.

    Read from ``metrics.json`` ``task`` (the task's own units, ``Task.record``); results from
    before it have only the dataset's images per class.
    """
    task = metrics.get("task") or {}
    if task.get("class_counts"):
        return str(task.get("unit_name") or "images"), {str(k): int(v) for k, v in
                                                        task["class_counts"].items()}
    counts = (metrics.get("dataset") or {}).get("class_counts") or {}
    return "images", {str(k): int(v) for k, v in counts.items()}


def _per_image(folds: list[dict], seconds: str, count: str) -> float | None:
    """Mean over CV folds of ``seconds / count`` (``None`` when not recorded)."""
    values = [f[seconds] / f[count] for f in folds
              if f.get("fold", 0) >= 0 and f.get(seconds) is not None and f.get(count)]
    return float(np.mean(values)) if values else None


def cost_rows(results: Results) -> list[dict[str, Any]]:
    """Seconds per image of each approach's model in the headline (or every model without one).

    Returns
    -------
    list of dict
        ``model``, ``kind``, ``extract`` (feature extraction wall seconds per image, classical
        only), ``train`` (training seconds per training image), ``predict`` (prediction seconds
        per test image) and ``new_image`` (extract + predict: the cost of classifying one new
        image); ``None`` where not recorded.
    """
    metrics = results.metrics
    headline = metrics.get("headline") or {}
    names = [side["model"] for side in (headline.get("model_a"), headline.get("model_b")) if side]
    names = names or list(metrics["models"])
    extraction = (metrics.get("features") or {}).get("extraction") or {}
    rows = []
    for name in names:
        info = metrics["models"][name]
        folds = info.get("folds") or []
        classical = info.get("kind") != "deep"
        extract = extraction.get("seconds_per_image") if classical else None
        predict = _per_image(folds, "predict_seconds", "n_test")
        new = None if predict is None or (classical and extract is None) else predict + (extract or 0.0)
        rows.append({"model": name, "kind": info.get("kind", "classical"), "extract": extract,
                     "train": _per_image(folds, "fit_seconds", "n_train"), "predict": predict,
                     "new_image": new, "jobs": extraction.get("jobs") if classical else None})
    return rows


def hardware(results: Results) -> str:
    """``"2 CPU cores (model), no GPU"`` from the environment record."""
    env = results.metrics.get("environment") or {}
    cores = env.get("cpu_count")
    cpu = env.get("cpu") or "CPU not recorded"
    gpu = env.get("gpu")
    return (f"{cores} CPU cores ({cpu})" if cores else cpu) + (f", GPU {gpu}" if gpu else ", no GPU")


def first_box(results: Results) -> dict[str, Any]:
    """Context of the first box of the report.

    Returns
    -------
    dict
        ``question``, ``headline`` (metrics.json's record or ``None``), ``missing`` (a sentence
        when there is no headline), ``caveats``, ``cost``, ``hardware``, ``factors`` (which
        factor of the 2x2 carries the difference, ``comparison.factors``; ``None`` without one).
    """
    headline = results.metrics.get("headline")
    missing = None
    if not headline:
        missing = ("metrics.json has no headline (a run from before bootstrap intervals): rerun "
                   "the comparison to get the answer with its interval.")
    return {"question": (headline or {}).get("question") or FALLBACK_QUESTION, "headline": headline,
            "missing": missing, "caveats": caveats(results), "cost": cost_rows(results),
            "hardware": hardware(results),
            "factors": (results.metrics.get("factors") or {}).get("answer")}
