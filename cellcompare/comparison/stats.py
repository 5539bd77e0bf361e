"""Honest statistics over folds: mean ± std, paired tests, McNemar, effect size, a verdict."""

from __future__ import annotations

import math
import warnings
from typing import Any, Sequence

import numpy as np
from scipy import stats as sps

__all__ = ["ALPHA", "MIN_FOLDS_FOR_TESTS", "mean_std", "paired_tests", "mcnemar", "cohens_dz",
           "verdict", "compare_models"]

ALPHA = 0.05
MIN_FOLDS_FOR_TESTS = 3
EXACT_MCNEMAR_BELOW = 25


def _clean(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(float(x)) else float(x)


def mean_std(values: Sequence[float]) -> dict[str, float | None]:
    """Mean and sample standard deviation (ddof=1; ``None`` when undefined) over folds."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=float)
    if not len(v):
        return {"mean": None, "std": None}
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if len(v) > 1 else None}


def cohens_dz(differences: Sequence[float]) -> float | None:
    """Paired effect size: mean difference / its standard deviation (``None`` if undefined)."""
    d = np.asarray(differences, dtype=float)
    if len(d) < 2:
        return None
    sd = d.std(ddof=1)
    if sd <= 1e-12 * max(1.0, abs(d.mean())):  # constant differences (up to rounding)
        return 0.0 if d.mean() == 0 else (math.inf if d.mean() > 0 else -math.inf)
    return float(d.mean() / sd)


def paired_tests(a: Sequence[float], b: Sequence[float]) -> dict[str, dict[str, float | None]]:
    """Paired t-test and Wilcoxon signed-rank on per-fold scores (``None`` where not testable)."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    d = a - b
    out = {"t_test": {"statistic": None, "pvalue": None}, "wilcoxon": {"statistic": None, "pvalue": None}}
    if len(d) < 2:
        return out
    if np.all(d == 0):
        out["t_test"] = {"statistic": 0.0, "pvalue": 1.0}
        out["wilcoxon"] = {"statistic": 0.0, "pvalue": 1.0}
        return out
    if np.ptp(d) <= 1e-12 * max(1.0, float(np.abs(d).max())):
        # equal non-zero differences in every fold: the t statistic is infinite and its
        # p = 0 would be an artefact, not evidence; leave the test undefined and say so
        out["t_test"] = {"statistic": None, "pvalue": None, "note": "constant non-zero differences"}
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t = sps.ttest_rel(a, b)
        out["t_test"] = {"statistic": _clean(t.statistic), "pvalue": _clean(t.pvalue)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            w = sps.wilcoxon(a, b, zero_method="wilcox")
            out["wilcoxon"] = {"statistic": _clean(w.statistic), "pvalue": _clean(w.pvalue)}
        except ValueError:
            pass
    return out


def mcnemar(correct_a: Sequence[bool], correct_b: Sequence[bool]) -> dict[str, Any]:
    """McNemar's test on paired right/wrong predictions of the same images.

    ``b`` = A right and B wrong, ``c`` = A wrong and B right. Exact two-sided binomial test
    when ``b + c < 25``, else the chi-square with continuity correction.
    """
    ca, cb = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    if ca.shape != cb.shape:
        raise ValueError(f"paired predictions differ in length: {ca.shape} vs {cb.shape}")
    b, c = int((ca & ~cb).sum()), int((~ca & cb).sum())
    if b + c == 0:
        return {"statistic": 0.0, "pvalue": 1.0, "b": b, "c": c, "method": "exact"}
    if b + c < EXACT_MCNEMAR_BELOW:
        p = sps.binomtest(min(b, c), b + c, 0.5).pvalue
        return {"statistic": float(min(b, c)), "pvalue": float(min(1.0, p)), "b": b, "c": c,
                "method": "exact"}
    stat = (abs(b - c) - 1) ** 2 / (b + c)
    return {"statistic": float(stat), "pvalue": float(sps.chi2.sf(stat, 1)), "b": b, "c": c,
            "method": "chi2"}


def verdict(model_a: str, model_b: str, metric: str, mean_difference: float | None,
            n_folds: int, pvalue: float | None, mcnemar_p: float | None,
            lower_is_better: bool = False) -> str:
    """One plain-language sentence; says "not distinguishable" unless the paired test says otherwise."""
    if mean_difference is None:
        return f"{model_a} and {model_b} could not be compared on {metric} (no paired folds)."
    size = f"mean {metric} difference {mean_difference:+.3f} over {n_folds} folds"
    if n_folds < MIN_FOLDS_FOR_TESTS:
        return (f"{model_a} and {model_b} are not distinguishable on {metric}: too few folds "
                f"({n_folds}) for a paired test ({size}).")
    if pvalue is None:
        extra = (f"; McNemar on the pooled predictions p = {mcnemar_p:.3g}" if mcnemar_p is not None else "")
        return (f"{model_a} and {model_b} cannot be told apart by a paired t-test on {metric}: the "
                f"difference is the same in every fold ({size}), which leaves the test undefined"
                f"{extra}.")
    if pvalue >= ALPHA:
        extra = (f"; McNemar on the pooled predictions p = {mcnemar_p:.3g}" if mcnemar_p is not None else "")
        return (f"{model_a} and {model_b} are not distinguishable on {metric} "
                f"({size}, paired t-test p = {pvalue:.3g}{extra}).")
    a_better = (mean_difference < 0) if lower_is_better else (mean_difference > 0)
    better, worse = (model_a, model_b) if a_better else (model_b, model_a)
    return (f"{better} is better than {worse} on {metric} ({size}, paired t-test p = {pvalue:.3g}); "
            f"with few folds treat this as indicative, not conclusive.")


def compare_models(model_a: str, model_b: str, metric: str, scores_a: Sequence[float],
                   scores_b: Sequence[float], correct_a: Sequence[bool], correct_b: Sequence[bool],
                   lower_is_better: bool = False) -> dict[str, Any]:
    """All statistics of one pair on one metric, as the ``comparisons`` entry of metrics.json."""
    d = np.asarray(scores_a, dtype=float) - np.asarray(scores_b, dtype=float)
    tests = paired_tests(scores_a, scores_b)
    mc = mcnemar(correct_a, correct_b)
    mean_d = float(d.mean()) if len(d) else None
    return {
        "model_a": model_a, "model_b": model_b, "metric": metric,
        "differences": [float(x) for x in d], "mean_difference": mean_d,
        **tests, "mcnemar": mc, "cohens_dz": _clean(cohens_dz(d)),
        "verdict": verdict(model_a, model_b, metric, mean_d, len(d), tests["t_test"]["pvalue"],
                           mc["pvalue"], lower_is_better),
    }
