"""Honest statistics over folds: mean ± std, paired tests, McNemar, effect size, a verdict, and
the pairwise tests of one metric as a compact matrix."""

from __future__ import annotations

import math
import warnings
from typing import Any, Sequence

import numpy as np
from scipy import stats as sps

__all__ = ["ALPHA", "MIN_FOLDS_FOR_TESTS", "mean_std", "paired_tests", "mcnemar", "cohens_dz",
           "verdict", "compare_models", "pairwise_matrix", "finite_or_none"]

ALPHA = 0.05
MIN_FOLDS_FOR_TESTS = 3
EXACT_MCNEMAR_BELOW = 25


def finite_or_none(x: float | None) -> float | None:
    """``x`` as a float, or ``None`` when it is missing, NaN or infinite (JSON has no NaN)."""
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
        out["t_test"] = {"statistic": finite_or_none(t.statistic), "pvalue": finite_or_none(t.pvalue)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            w = sps.wilcoxon(a, b, zero_method="wilcox")
            out["wilcoxon"] = {"statistic": finite_or_none(w.statistic), "pvalue": finite_or_none(w.pvalue)}
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
        **tests, "mcnemar": mc, "cohens_dz": finite_or_none(cohens_dz(d)),
        "verdict": verdict(model_a, model_b, metric, mean_d, len(d), tests["t_test"]["pvalue"],
                           mc["pvalue"], lower_is_better),
    }


def pairwise_matrix(comparisons: Sequence[dict], models: Sequence[str],
                    metric: str) -> dict[str, Any]:
    """The paired tests of one metric as square matrices (row model minus column model).

    Parameters
    ----------
    comparisons : sequence of dict
        ``comparisons`` entries of metrics.json (each pair once, in either order).
    models : sequence of str
        Row and column order.
    metric : str
        The metric to show.

    Returns
    -------
    dict
        ``models``, and ``difference``, ``t_pvalue``, ``mcnemar_pvalue``: lists of rows with
        ``None`` on the diagonal and for pairs that were not compared. ``difference[i][j]`` is
        the mean per-fold difference ``models[i] - models[j]``.
    """
    index = {m: i for i, m in enumerate(models)}
    n = len(models)
    out = {"models": list(models), "metric": metric,
           **{k: [[None] * n for _ in range(n)] for k in ("difference", "t_pvalue", "mcnemar_pvalue")}}
    for comp in comparisons:
        a, b = comp.get("model_a"), comp.get("model_b")
        if comp.get("metric") != metric or a not in index or b not in index:
            continue
        i, j = index[a], index[b]
        diff = comp.get("mean_difference")
        for (r, c), sign in (((i, j), 1.0), ((j, i), -1.0)):
            out["difference"][r][c] = None if diff is None else sign * float(diff)
            out["t_pvalue"][r][c] = (comp.get("t_test") or {}).get("pvalue")
            out["mcnemar_pvalue"][r][c] = (comp.get("mcnemar") or {}).get("pvalue")
    return out
