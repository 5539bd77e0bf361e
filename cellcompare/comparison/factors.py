"""The 2x2 of a run: representation (CellProfiler, learned) x head (classical, network).

"Features + SVM against a ResNet" changes two things at once. A classical head on embeddings
(``representation: embeddings:<source>``) separates them: with it,

* the **representation** factor compares the best classical head on CellProfiler features with
  the best classical head on embeddings (the head held fixed);
* the **head** factor compares the best classical head on embeddings with the best network
  (the learned representation held fixed).

Each factor gets the paired bootstrap interval of its difference (``bootstrap.differences``)
and the paired t-test and McNemar p of the pair (``comparisons``), from the same folds and test
units. No network is trained on CellProfiler features, so that cell is empty and said to be.
:func:`factor_table` writes ``metrics.json`` ``factors``; the report shows it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = ["cell_of", "factor_pairs", "factor_table"]

CELLS = (("cellprofiler", "classical"), ("cellprofiler", "network"), ("learned", "classical"),
         ("learned", "network"))


def cell_of(entry: dict[str, Any]) -> tuple[str, str]:
    """``(representation, head)`` of a ``metrics.json`` model entry.

    Examples
    --------
    >>> cell_of({"kind": "classical", "representation": "embeddings:ssl"})
    ('learned', 'classical')
    >>> cell_of({"kind": "deep"}), cell_of({"kind": "classical"})
    (('learned', 'network'), ('cellprofiler', 'classical'))
    """
    if entry.get("kind") == "deep":
        return "learned", "network"
    return ("cellprofiler" if entry.get("representation", "cellprofiler") == "cellprofiler"
            else "learned"), "classical"


def _difference(bootstrap: dict, comparisons: Sequence[dict], a: str, b: str, metric: str) -> dict:
    """``a`` minus ``b`` on ``metric``: bootstrap interval and the paired tests."""
    out: dict[str, Any] = {"model_a": a, "model_b": b}
    for row in bootstrap.get("differences") or []:
        if {row.get("model_a"), row.get("model_b")} == {a, b} and metric in row:
            sign = 1.0 if row["model_a"] == a else -1.0
            values = row[metric]
            if values.get("low") is not None and values.get("estimate") is not None:
                low, high = sorted((sign * values["low"], sign * values["high"]))
                out.update(estimate=sign * values["estimate"], low=low, high=high)
    for row in comparisons:
        if {row.get("model_a"), row.get("model_b")} == {a, b} and row.get("metric") == metric:
            out["t_test_p"] = (row.get("t_test") or {}).get("pvalue")
            out["mcnemar_p"] = (row.get("mcnemar") or {}).get("pvalue")
    out["distinguishable"] = bool("low" in out and (out["low"] > 0 or out["high"] < 0))
    return out


def _best(models: dict[str, dict], metric: str) -> dict[str, str | None]:
    """The model of each cell with the highest mean ``metric`` over folds (``summary``)."""
    def score(name: str) -> float:
        value = ((models[name].get("summary") or {}).get(metric) or {}).get("mean")
        return float("-inf") if value is None else float(value)

    out: dict[str, str | None] = {}
    for rep, head in CELLS:
        names = [n for n, e in models.items() if cell_of(e) == (rep, head)]
        out[f"{rep}/{head}"] = max(names, key=score) if names else None
    return out


def _pairs(best: dict[str, str | None]) -> dict[str, tuple[str | None, str | None]]:
    return {"representation": (best["learned/classical"], best["cellprofiler/classical"]),
            "head": (best["learned/network"], best["learned/classical"])}


def factor_pairs(models: dict[str, dict], metric: str) -> list[tuple[str, str]]:
    """The model pairs the factors compare (``a`` minus ``b``), for the bootstrap to resample.

    The best model of a cell is the one with the highest mean ``metric`` over folds.

    Examples
    --------
    >>> models = {"svm": {"kind": "classical", "summary": {"accuracy": {"mean": .6}}},
    ...           "emb": {"kind": "classical", "representation": "embeddings:ssl",
    ...                   "summary": {"accuracy": {"mean": .5}}}}
    >>> factor_pairs(models, "accuracy")
    [('emb', 'svm')]
    """
    return [(a, b) for a, b in _pairs(_best(models, metric)).values() if a and b]


def factor_table(models: dict[str, dict], bootstrap: dict, comparisons: Sequence[dict],
                 metric: str) -> dict[str, Any] | None:
    """``metrics.json`` ``factors``, or ``None`` when no factor has both of its levels.

    Parameters
    ----------
    models : dict
        ``metrics.json`` ``models`` (``kind``, ``representation``).
    bootstrap : dict
        ``metrics.json`` ``bootstrap`` (per-model intervals and paired differences).
    comparisons : sequence of dict
        ``metrics.json`` ``comparisons`` (paired tests of every pair on every metric).
    metric : str
        The primary metric (the headline's).

    Returns
    -------
    dict
        ``metric``; ``cells``: per cell the models in it with estimate and interval, and the
        best; ``factors``: ``representation`` and ``head`` (the best of each level, the
        difference with its interval and tests; ``None`` where a level is empty); ``answer``:
        a sentence saying which factor carries the difference.

    Examples
    --------
    >>> boot = {"models": {m: {"accuracy": {"estimate": e, "low": e - .1, "high": e + .1}}
    ...                    for m, e in [("svm", .6), ("svm_ssl", .7), ("cnn", .9)]},
    ...         "differences": [{"model_a": "svm_ssl", "model_b": "cnn",
    ...                          "accuracy": {"estimate": -.2, "low": -.3, "high": -.1}},
    ...                         {"model_a": "svm", "model_b": "svm_ssl",
    ...                          "accuracy": {"estimate": -.1, "low": -.25, "high": .05}}]}
    >>> models = {"svm": {"kind": "classical"}, "cnn": {"kind": "deep"},
    ...           "svm_ssl": {"kind": "classical", "representation": "embeddings:ssl"}}
    >>> for (name, entry), mean in zip(models.items(), (.6, .9, .7)):
    ...     entry["summary"] = {"accuracy": {"mean": mean}}
    >>> table = factor_table(models, boot, [], "accuracy")
    >>> table["factors"]["head"]["estimate"], table["factors"]["representation"]["distinguishable"]
    (0.2, False)
    >>> table["answer"]  # doctest: +ELLIPSIS
    'The head carries the difference: ...'
    """
    scores = (bootstrap or {}).get("models") or {}
    cells: dict[str, dict[str, Any]] = {}
    best = _best(models, metric)
    for rep, head in CELLS:
        members = []
        for name, entry in models.items():
            score = (scores.get(name) or {}).get(metric)
            if cell_of(entry) == (rep, head) and score:
                members.append({"model": name, "estimate": score["estimate"], "low": score["low"],
                                "high": score["high"]})
        members.sort(key=lambda m: m["model"] != best[f"{rep}/{head}"])  # the best first
        cells[f"{rep}/{head}"] = {"models": members, "best": best[f"{rep}/{head}"] if members else None}
    pairs = _pairs(best)
    factors = {name: _difference(bootstrap, comparisons, a, b, metric) if a and b else None
               for name, (a, b) in pairs.items()}
    if all(f is None for f in factors.values()):
        return None
    return {"metric": metric, "cells": cells, "factors": factors, "answer": _answer(factors, metric)}


def _answer(factors: dict[str, dict | None], metric: str) -> str:
    said = {"representation": "learned representation minus CellProfiler features, both with a classical head",
            "head": "network minus classical head, both on a learned representation"}
    shown = {k: f for k, f in factors.items() if f is not None and "estimate" in f}
    if not shown:
        return "No factor has a bootstrap interval (a run without intervals)."
    parts = [f"{k} {f['estimate']:+.3f} ({said[k]}; 95 % interval {f['low']:+.3f} to {f['high']:+.3f})"
             for k, f in shown.items()]
    clear = [k for k, f in shown.items() if f["distinguishable"]]
    missing = [k for k in factors if k not in shown]
    tail = f"; the {missing[0]} factor was not run (no model in one of its cells)" if missing else ""
    if not clear:
        return (f"Neither factor's {metric} difference is distinguishable from 0: "
                + "; ".join(parts) + tail + ".")
    top = max(clear, key=lambda k: abs(shown[k]["estimate"]))
    both = " (both factors' intervals exclude 0)" if len(clear) == 2 else ""
    return f"The {top} carries the difference{both}: " + "; ".join(parts) + tail + "."
