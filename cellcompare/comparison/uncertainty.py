"""Uncertainty beyond the fold standard deviation, and the headline answer of a run.

Bootstrap intervals over the pooled test images of all folds (over wells where the dataset has
them) for every model's accuracy, top-k and balanced accuracy, paired between models; and the
``headline`` record: the best classical model against the best deep model on the primary
metric, with the interval of their difference, the paired tests and one sentence.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse

from cellcompare.comparison.stats import ALPHA, finite_or_none, pairwise_matrix
from cellcompare.comparison.wells import well_keys
from cellcompare.proba import top_k as top_k_labels

__all__ = ["BOOTSTRAP_METRICS", "PRIMARY_METRIC", "QUESTION", "bootstrap_metrics", "headline_pair",
           "headline", "uncertainty", "well_units"]

#: Metrics that get a bootstrap interval per model (each is a ratio of counts per resample).
BOOTSTRAP_METRICS = ("accuracy", "top_k_accuracy", "balanced_accuracy")
#: The metric the headline answers on.
PRIMARY_METRIC = "accuracy"
N_BOOT = 2000
CONFIDENCE = 0.95
QUESTION = ("Do CellProfiler features with a classical classifier (SVM / XGBoost), or a deep "
            "network (ResNet18), separate these classes better on the same images and folds?")


def _unit_counts(units: np.ndarray, y: np.ndarray, correct: np.ndarray, in_top_k: np.ndarray,
                 n_classes: int, order: np.ndarray) -> dict[str, np.ndarray]:
    """Per resampling unit: images per class, correct per class, top-k hits (``(U, C)``, ``(U,)``)."""
    u = np.searchsorted(order, units)
    shape = (len(order), n_classes)
    # sparse: a well holds one class, so (U, C) has about U non-zeros even with 1,139 classes
    n_uc = sparse.csr_matrix((np.ones(len(u)), (u, y)), shape=shape)
    c_uc = sparse.csr_matrix((correct.astype(float), (u, y)), shape=shape)
    topk = np.bincount(u, weights=in_top_k.astype(float), minlength=len(order))
    return {"n": n_uc, "correct": c_uc, "top_k": topk}


def _resampled(counts: dict[str, np.ndarray], weights: np.ndarray) -> dict[str, np.ndarray]:
    """``BOOTSTRAP_METRICS`` for each row of unit ``weights`` ``(B, U)`` (multiplicities)."""
    n_c = np.asarray(weights @ counts["n"])
    c_c = np.asarray(weights @ counts["correct"])
    total = n_c.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(n_c > 0, c_c / np.where(n_c > 0, n_c, 1.0), np.nan)
        return {"accuracy": c_c.sum(axis=1) / total,
                "top_k_accuracy": (weights @ counts["top_k"]) / total,
                "balanced_accuracy": np.nanmean(recall, axis=1)}


def _weights(n_units: int, n_boot: int, rng: np.random.Generator):
    """Chunks of bootstrap multiplicities ``(b, U)``: units drawn with replacement."""
    chunk = max(1, min(n_boot, 20_000_000 // max(n_units, 1)))
    left = n_boot
    while left > 0:
        b = min(chunk, left)
        yield rng.multinomial(n_units, np.full(n_units, 1.0 / n_units), size=b).astype(float)
        left -= b


def bootstrap_metrics(y_true: Sequence[int], outcomes: dict[str, dict[str, np.ndarray]],
                      n_classes: int, *, units: Sequence | None = None, n_boot: int = N_BOOT,
                      confidence: float = CONFIDENCE, seed: int = 0,
                      pairs: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
    """Percentile bootstrap intervals of accuracy, top-k and balanced accuracy, per model.

    Every resample draws whole units (wells, or single images) with replacement and pools
    their images, so images of one well never count as independent evidence. All models are
    resampled with the same draws, which makes the intervals of differences paired.

    Parameters
    ----------
    y_true : sequence of int
        ``(n,)`` true class index of each test image (the same images for every model).
    outcomes : dict
        ``{model: {"correct": (n,) bool, "top_k": (n,) bool}}`` aligned with ``y_true``.
    n_classes : int
        Number of classes (indices in ``y_true`` are below it).
    units : sequence, optional
        ``(n,)`` resampling unit of each image (a well id); each image is its own unit if absent.
    n_boot : int
        Number of resamples.
    confidence : float
        Coverage of the interval (0.95: the 2.5 and 97.5 percentiles).
    seed : int
        Seed of the resampling; the same seed gives the same intervals.
    pairs : sequence of (str, str)
        Model pairs ``(a, b)`` whose difference ``a - b`` gets an interval too.

    Returns
    -------
    dict
        ``{"models": {model: {metric: {"estimate", "low", "high"}}}, "differences": [{"model_a",
        "model_b", metric: {...}}], "n_units", "n_images", "n_boot", "confidence"}``.

    Examples
    --------
    >>> out = bootstrap_metrics([0, 1], {"m": {"correct": np.array([True, True]),
    ...                                         "top_k": np.array([True, True])}}, 2, n_boot=50)
    >>> out["models"]["m"]["accuracy"]
    {'estimate': 1.0, 'low': 1.0, 'high': 1.0}
    """
    y = np.asarray(y_true, dtype=int)
    if len(y) == 0:
        raise ValueError("bootstrap_metrics needs at least one test image")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), found {confidence}")
    units = np.arange(len(y)) if units is None else np.asarray(units).astype(str)
    if len(units) != len(y):
        raise ValueError(f"units has {len(units)} entries for {len(y)} images")
    for name, out in outcomes.items():
        for key in ("correct", "top_k"):
            if len(out[key]) != len(y):
                raise ValueError(f"outcomes[{name!r}][{key!r}] has {len(out[key])} entries for "
                                 f"{len(y)} images")
    order = np.unique(units)
    counts = {m: _unit_counts(units, y, np.asarray(o["correct"], bool), np.asarray(o["top_k"], bool),
                              n_classes, order) for m, o in outcomes.items()}
    point = {m: {k: float(v[0]) for k, v in _resampled(c, np.ones((1, len(order)))).items()}
             for m, c in counts.items()}
    draws: dict[str, dict[str, list]] = {m: {k: [] for k in BOOTSTRAP_METRICS} for m in counts}
    for weights in _weights(len(order), n_boot, np.random.default_rng(seed)):
        for m, c in counts.items():
            for k, v in _resampled(c, weights).items():
                draws[m][k].append(v)
    draws = {m: {k: np.concatenate(v) for k, v in d.items()} for m, d in draws.items()}
    tail = 100 * (1 - confidence) / 2

    def interval(estimate: float, values: np.ndarray) -> dict[str, float | None]:
        values = values[np.isfinite(values)]
        if not len(values):
            return {"estimate": finite_or_none(estimate), "low": None, "high": None}
        low, high = np.percentile(values, [tail, 100 - tail])
        return {"estimate": finite_or_none(estimate), "low": float(low), "high": float(high)}

    models = {m: {k: interval(point[m][k], draws[m][k]) for k in BOOTSTRAP_METRICS} for m in counts}
    differences = [{"model_a": a, "model_b": b,
                    **{k: interval(point[a][k] - point[b][k], draws[a][k] - draws[b][k])
                       for k in BOOTSTRAP_METRICS}} for a, b in pairs]
    return {"models": models, "differences": differences, "n_units": int(len(order)),
            "n_images": int(len(y)), "n_boot": int(n_boot), "confidence": confidence}


def _best(models: dict[str, dict], names: Sequence[str], metric: str) -> str | None:
    """The model of ``names`` with the highest fold mean of ``metric`` (first one on ties)."""
    scored = [(m, (models[m].get("summary") or {}).get(metric, {}).get("mean")) for m in names]
    scored = [(m, s) for m, s in scored if s is not None and math.isfinite(s)]
    return max(scored, key=lambda ms: ms[1])[0] if scored else None


def headline_pair(models: dict[str, dict], metric: str = PRIMARY_METRIC) -> tuple[str | None, str | None]:
    """The two models the question is about: best classical and best deep model on ``metric``.

    With models of one kind only, the best and the runner-up of that kind; with one model,
    ``(model, None)``.
    """
    classical = [m for m, info in models.items() if info.get("kind") != "deep"]
    deep = [m for m, info in models.items() if info.get("kind") == "deep"]
    if classical and deep:
        return _best(models, classical, metric), _best(models, deep, metric)
    first = _best(models, list(models), metric)
    second = _best(models, [m for m in models if m != first], metric)
    return first, second


def _find_comparison(comparisons: Sequence[dict], a: str, b: str, metric: str) -> dict:
    """The ``comparisons`` entry of the pair on ``metric`` in either order (its p-values are
    symmetric), or ``{}``."""
    for comp in comparisons:
        if comp.get("metric") == metric and {comp.get("model_a"), comp.get("model_b")} == {a, b}:
            return comp
    return {}


def headline(models: dict[str, dict], comparisons: Sequence[dict], bootstrap: dict[str, Any], *,
             metric: str = PRIMARY_METRIC, unit: str = "image") -> dict[str, Any]:
    """The answer to the question in one record: two models, intervals, paired tests, a sentence.

    Parameters
    ----------
    models : dict
        ``models`` of metrics.json (``kind``, ``summary``, ``folds`` per model).
    comparisons : sequence of dict
        ``comparisons`` of metrics.json.
    bootstrap : dict
        From :func:`bootstrap_metrics`, with the pair of :func:`headline_pair` in ``pairs``.
    metric : str
        The primary metric.
    unit : str
        What one bootstrap unit is (``"well"`` or ``"image"``), for the sentence.

    Returns
    -------
    dict
        ``question``, ``metric``, ``model_a`` / ``model_b`` (each ``model``, ``kind``,
        ``estimate``, ``low``, ``high``, ``fold_mean``, ``fold_std``), ``difference`` (a - b:
        ``estimate``, ``low``, ``high``), ``t_test_p``, ``wilcoxon_p``, ``mcnemar_p``,
        ``n_folds``, ``n_units``, ``unit``, ``confidence``, ``distinguishable`` and ``sentence``.
    """
    a, b = headline_pair(models, metric)
    out: dict[str, Any] = {"question": QUESTION, "metric": metric, "unit": unit,
                           "n_units": bootstrap.get("n_units"), "n_boot": bootstrap.get("n_boot"),
                           "confidence": bootstrap.get("confidence")}

    def side(name: str | None) -> dict[str, Any] | None:
        if name is None:
            return None
        ci = bootstrap["models"].get(name, {}).get(metric, {})
        fold = (models[name].get("summary") or {}).get(metric, {})
        return {"model": name, "kind": models[name].get("kind"), "estimate": ci.get("estimate"),
                "low": ci.get("low"), "high": ci.get("high"), "fold_mean": fold.get("mean"),
                "fold_std": fold.get("std")}

    out["model_a"], out["model_b"] = side(a), side(b)
    if a is None or b is None:
        out.update(difference=None, t_test_p=None, wilcoxon_p=None, mcnemar_p=None, n_folds=None,
                   distinguishable=None,
                   sentence=f"Only one model ({a}) was run, so there is nothing to compare.")
        return out
    diff = next((d[metric] for d in bootstrap.get("differences", [])
                 if (d["model_a"], d["model_b"]) == (a, b)), None)
    comp = _find_comparison(comparisons, a, b, metric)
    out["difference"] = diff
    out["t_test_p"] = (comp.get("t_test") or {}).get("pvalue")
    out["wilcoxon_p"] = (comp.get("wilcoxon") or {}).get("pvalue")
    out["mcnemar_p"] = (comp.get("mcnemar") or {}).get("pvalue")
    out["n_folds"] = len(comp.get("differences") or [])
    out["distinguishable"] = bool(diff and diff["low"] is not None
                                  and (diff["low"] > 0 or diff["high"] < 0))
    out["sentence"] = _headline_sentence(out)
    return out


def _p(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def _headline_sentence(h: dict[str, Any]) -> str:
    a, b, d, metric = h["model_a"], h["model_b"], h["difference"], h["metric"].replace("_", " ")
    pct = f"{100 * h['confidence']:g} %"
    if d is None or d["low"] is None:
        return f"{a['model']} and {b['model']} could not be compared on {metric} (no paired predictions)."
    scores = f"{a['estimate']:.3f} vs {b['estimate']:.3f}"
    ci = (f"difference {d['estimate']:+.3f}, {pct} interval {d['low']:+.3f} to {d['high']:+.3f} "
          f"from {h['n_units']} {h['unit']}s")
    tests = (f"paired t-test over {h['n_folds']} folds p = {_p(h['t_test_p'])}, "
             f"McNemar p = {_p(h['mcnemar_p'])}")
    if not h["distinguishable"]:
        return (f"{a['model']} ({a['kind']}) and {b['model']} ({b['kind']}) cannot be told apart "
                f"on {metric}: {scores} ({ci}, which includes 0; {tests}).")
    better, worse, sign = (a, b, 1.0) if d["estimate"] > 0 else (b, a, -1.0)
    low, high = sorted((sign * d["low"], sign * d["high"]))
    hedge = ("" if h["t_test_p"] is not None and h["t_test_p"] < ALPHA else
             " The per-fold t-test does not confirm it, so treat it as indicative.")
    return (f"{better['model']} ({better['kind']}) separates the classes better than "
            f"{worse['model']} ({worse['kind']}) on {metric}: {better['estimate']:.3f} vs "
            f"{worse['estimate']:.3f} (difference {sign * d['estimate']:+.3f}, {pct} interval "
            f"{low:+.3f} to {high:+.3f} from {h['n_units']} {h['unit']}s; {tests}).{hedge}")


def uncertainty(models: dict[str, dict], comparisons: Sequence[dict], predictions: pd.DataFrame,
                classes: Sequence[str], top_k: int, *, metric: str = PRIMARY_METRIC,
                units: dict[str, str] | None = None, unit: str = "image", n_boot: int = N_BOOT,
                seed: int = 0, pairs: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
    """Bootstrap intervals of every model and the headline, from the pooled CV predictions.

    Parameters
    ----------
    models, comparisons : as in metrics.json
    predictions : pd.DataFrame
        ``predictions.parquet``: sample_id, fold, model, true_label, ``proba_{class}``; hold-out
        rows (fold -1) are left out.
    classes : sequence of str
        Column order of the probabilities.
    top_k : int
        ``k`` of top-k accuracy.
    metric : str
        The primary metric (one of :data:`BOOTSTRAP_METRICS`): the headline's and the matrix's.
    units : dict, optional
        ``{sample_id: well}``; images are their own units when absent.
    unit : str
        Name of one unit (``"well"``), for the headline sentence.
    n_boot, seed : int
        Resamples and their seed.
    pairs : sequence of (str, str)
        Model pairs whose paired difference gets an interval besides the headline's (the
        factors of ``comparison.factors``).

    Returns
    -------
    dict
        ``{"bootstrap": ..., "headline": ..., "pairwise": ...}`` for metrics.json
        (``bootstrap["unit"]`` names the unit; ``pairwise`` is :func:`pairwise_matrix` of the
        primary metric).
    """
    cv = predictions[predictions["fold"] >= 0]
    names = [m for m in models if m in set(cv["model"])]
    proba_cols = [f"proba_{c}" for c in classes]
    keyed = {m: cv[cv["model"] == m].set_index(["fold", "sample_id"]).sort_index() for m in names}
    common = None
    for frame in keyed.values():
        common = frame.index if common is None else common.intersection(frame.index)
    if common is None or not len(common):
        raise ValueError("uncertainty: no test image was predicted by every model")
    outcomes = {}
    y = None
    for m, frame in keyed.items():
        rows = frame.loc[common]
        truth = rows["true_label"].astype(str).to_numpy()
        labels, _ = top_k_labels(rows[proba_cols].to_numpy(dtype=float), list(classes), top_k)
        outcomes[m] = {"correct": labels[:, 0] == truth, "top_k": (labels == truth[:, None]).any(axis=1)}
        if y is None:
            position = {str(c): i for i, c in enumerate(classes)}
            y = np.asarray([position[t] for t in truth], dtype=int)
    ids = common.get_level_values("sample_id").astype(str)
    unit_of = None if units is None else np.asarray([units.get(s, s) for s in ids])
    if metric not in BOOTSTRAP_METRICS:
        raise ValueError(f"primary metric {metric!r} has no bootstrap interval; use one of "
                         f"{list(BOOTSTRAP_METRICS)}")
    pair = headline_pair({m: models[m] for m in names}, metric)
    wanted = ([pair] if None not in pair else []) + [tuple(p) for p in pairs if set(p) <= set(names)]
    boot = bootstrap_metrics(y, outcomes, len(classes), units=unit_of, n_boot=n_boot, seed=seed,
                             pairs=list(dict.fromkeys(wanted)))
    boot["unit"] = unit if units is not None else "image"
    return {"bootstrap": boot,
            "headline": headline({m: models[m] for m in names}, comparisons, boot, metric=metric,
                                 unit=boot["unit"]),
            "pairwise": pairwise_matrix(comparisons, names, metric)}


def well_units(index: pd.DataFrame) -> dict[str, Any]:
    """Keyword arguments of :func:`uncertainty` that resample wells when the dataset has them.

    Parameters
    ----------
    index : pd.DataFrame
        A dataset's index (the well of a sample is :func:`comparison.wells.well_keys`).

    Returns
    -------
    dict
        ``{"units": {sample_id: well}, "unit": "well"}``, or ``{"units": None, "unit":
        "image"}`` when the layout knows no wells (every image is its own unit).
    """
    keys = well_keys(index)
    if keys is None:
        return {"units": None, "unit": "image"}
    return {"units": {str(k): str(v) for k, v in keys.items()}, "unit": "well"}
