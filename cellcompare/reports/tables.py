"""Tables of the report: summary (mean ± std), confusions, recall, tests, cost, features."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from cellcompare.reports.load import Results, lower_is_better

__all__ = ["Cell", "SummaryTable", "format_mean_std", "summary_frame", "summary_table",
           "markdown_table", "top_confusions", "recall_long", "cost_table", "top_features",
           "comparison_rows", "metric_label", "DECIMALS", "format_interval", "bootstrap_frame",
           "pairwise_frame", "terminal_table", "wells_frame"]

DECIMALS = 3


@dataclass(frozen=True)
class Cell:
    """One displayed table cell; ``best`` marks the best value of its column."""

    text: str
    best: bool = False


@dataclass(frozen=True)
class SummaryTable:
    """The results table: metric columns, and per model a row of :class:`Cell`."""

    metrics: list[str]
    rows: list[tuple[str, list[Cell]]]


def format_mean_std(mean: float, std: float, decimals: int = DECIMALS) -> str:
    """Format as ``0.912 ± 0.015`` (``n/a`` when the mean is missing)."""
    if mean is None or not np.isfinite(mean):
        return "n/a"
    if std is None or not np.isfinite(std):
        return f"{mean:.{decimals}f}"
    return f"{mean:.{decimals}f} ± {std:.{decimals}f}"


def summary_frame(results: Results) -> pd.DataFrame:
    """One row per model with ``{metric}_mean`` and ``{metric}_std``.

    Uses each model's ``summary`` in ``metrics.json``; a metric missing there is computed
    from the per-fold values (sample standard deviation, ``ddof=1``).
    """
    folds = results.fold_table()
    rows = {}
    for model, info in results.metrics["models"].items():
        summary = info.get("summary") or {}
        row = {}
        for metric in results.metric_names:
            if metric in summary:
                row[f"{metric}_mean"] = summary[metric].get("mean")
                row[f"{metric}_std"] = summary[metric].get("std")
            elif not folds.empty and metric in folds.columns:
                values = folds.loc[folds["model"] == model, metric].astype(float)
                row[f"{metric}_mean"] = values.mean()
                row[f"{metric}_std"] = values.std(ddof=1) if len(values) > 1 else np.nan
        rows[model] = row
    frame = pd.DataFrame.from_dict(rows, orient="index").astype(float)
    frame.index.name = "model"
    return frame


def summary_table(summary: pd.DataFrame, metrics: Sequence[str]) -> SummaryTable:
    """Format the summary with the best mean of each metric marked (lowest for losses)."""
    metrics = [m for m in metrics if f"{m}_mean" in summary.columns]
    best = {}
    for metric in metrics:
        means = summary[f"{metric}_mean"].round(DECIMALS)
        if means.notna().any():
            best[metric] = means.min() if lower_is_better(metric) else means.max()
    rows = []
    for model, row in summary.iterrows():
        cells = []
        for metric in metrics:
            mean, std = row[f"{metric}_mean"], row[f"{metric}_std"]
            is_best = metric in best and np.isfinite(mean) and round(mean, DECIMALS) == best[metric]
            cells.append(Cell(format_mean_std(mean, std), bool(is_best)))
        rows.append((str(model), cells))
    return SummaryTable(metrics=list(metrics), rows=rows)


def markdown_table(table: SummaryTable, top_k: int = 3) -> str:
    """A GitHub/pandoc Markdown table of the summary; best values in bold."""
    header = ["model"] + [metric_label(m, top_k) for m in table.metrics]
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join(["---"] + ["---:"] * len(table.metrics)) + "|"]
    for model, cells in table.rows:
        texts = [f"**{c.text}**" if c.best else c.text for c in cells]
        lines.append("| " + " | ".join([model, *texts]) + " |")
    return "\n".join(lines) + "\n"


def metric_label(metric: str, top_k: int = 3) -> str:
    """Human label of a metric name (``top_k_accuracy`` → ``top-3 accuracy``)."""
    label = metric.replace("top_k", f"top-{top_k}").replace("_", " ")
    return label + (" (lower is better)" if lower_is_better(metric) else "")


def top_confusions(counts: np.ndarray, classes: Sequence[str], n: int = 20) -> pd.DataFrame:
    """The ``n`` most frequent confusions of a confusion-count matrix (rows: true class).

    Returns columns ``true class``, ``predicted as``, ``fraction`` (of the true class's
    images) and ``images`` (count), largest fraction first; zero cells are left out.
    """
    counts = np.asarray(counts, dtype=float)
    rows = counts.sum(axis=1, keepdims=True)
    off = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    np.fill_diagonal(off, 0.0)
    flat = np.argsort(off, axis=None, kind="stable")[::-1][:n]
    true_idx, pred_idx = np.unravel_index(flat, off.shape)
    frame = pd.DataFrame({"true class": [classes[i] for i in true_idx],
                          "predicted as": [classes[j] for j in pred_idx],
                          "fraction": off[true_idx, pred_idx],
                          "images": counts[true_idx, pred_idx].astype(int)})
    return frame[frame["fraction"] > 0].reset_index(drop=True)


def recall_long(results: Results) -> pd.DataFrame:
    """Per-class recall averaged over folds: columns ``model``, ``class``, ``recall``."""
    rows = []
    for model, info in results.metrics["models"].items():
        per_fold = [f.get("per_class_recall") or {} for f in info.get("folds", [])]
        frame = pd.DataFrame(per_fold)
        for cls in frame.columns:
            rows.append({"model": model, "class": str(cls),
                         "recall": float(frame[cls].astype(float).mean())})
    return pd.DataFrame(rows, columns=["model", "class", "recall"])


def cost_table(folds: pd.DataFrame) -> pd.DataFrame:
    """Mean ± std of fit/predict seconds and peak memory per model, formatted."""
    columns = {"fit_seconds": "fit time (s)", "predict_seconds": "predict time (s)",
               "peak_memory_mb": "peak memory (MB)"}
    present = [c for c in columns if c in folds.columns]
    grouped = folds.groupby("model", sort=False)[present]
    mean, std = grouped.mean(), grouped.std(ddof=1)
    out = pd.DataFrame(index=mean.index)
    for column in present:
        out[columns[column]] = [format_mean_std(m, s, 2) for m, s in
                                zip(mean[column], std[column])]
    return out.reset_index()


def top_features(importance: pd.DataFrame, model: str, score: str, n: int = 20) -> pd.DataFrame:
    """The ``n`` features of ``model`` with the largest mean ``score`` over folds."""
    subset = importance[importance["model"] == model]
    grouped = (subset.groupby(["feature", "family"], dropna=False)[["gain", "permutation"]]
               .mean().reset_index())
    grouped = grouped[grouped[score].notna()]
    return grouped.sort_values(score, ascending=False).head(n).reset_index(drop=True)


def comparison_rows(results: Results) -> list[dict[str, str]]:
    """Paired tests from ``metrics.json`` formatted for display."""
    rows = []
    for comp in results.metrics.get("comparisons", []):
        def pvalue(test: str) -> str:
            value = (comp.get(test) or {}).get("pvalue")
            return "n/a" if value is None else f"{value:.3g}"

        diff = comp.get("mean_difference")
        dz = comp.get("cohens_dz")
        rows.append({
            "pair": f"{comp.get('model_a')} vs {comp.get('model_b')}",
            "metric": str(comp.get("metric", "")),
            "difference": "n/a" if diff is None else f"{diff:+.{DECIMALS}f}",
            "t": pvalue("t_test"), "wilcoxon": pvalue("wilcoxon"), "mcnemar": pvalue("mcnemar"),
            "dz": "n/a" if dz is None or not np.isfinite(dz) else f"{dz:.2f}",
            "verdict": str(comp.get("verdict", "")),
        })
    return rows


def format_interval(ci: dict | None, decimals: int = DECIMALS, *, signed: bool = False) -> str:
    """``{"estimate", "low", "high"}`` as ``0.912 [0.850, 0.960]`` (``n/a`` when missing)."""
    if not ci or ci.get("estimate") is None:
        return "n/a"
    f = f"{{:+.{decimals}f}}" if signed else f"{{:.{decimals}f}}"
    if ci.get("low") is None or ci.get("high") is None:
        return f.format(ci["estimate"])
    return f"{f.format(ci['estimate'])} [{f.format(ci['low'])}, {f.format(ci['high'])}]"


def bootstrap_frame(results: Results) -> pd.DataFrame | None:
    """Per model, each bootstrapped metric as ``estimate [low, high]`` (``None`` without them)."""
    boot = results.metrics.get("bootstrap") or {}
    models = boot.get("models") or {}
    if not models:
        return None
    top_k = results.metrics.get("top_k", 3)
    metrics = list(dict.fromkeys(k for per in models.values() for k in per))
    rows = [{"model": m, **{metric_label(k, top_k): format_interval(per.get(k)) for k in metrics}}
            for m, per in models.items()]
    return pd.DataFrame(rows)


def wells_frame(results: Results) -> pd.DataFrame | None:
    """Per model, the well-level metrics as ``mean ± std`` over folds (``None`` without wells).

    ``metrics.json``'s ``wells`` entry averages the sites' probabilities per well before
    scoring; shown only when some well has more than one site (otherwise it repeats the table).
    """
    wells = results.metrics.get("wells") or {}
    if not wells.get("available") or (wells.get("sites_per_well") or {}).get("max", 1) <= 1:
        return None
    top_k = results.metrics.get("top_k", 3)
    rows = []
    for model, info in (wells.get("models") or {}).items():
        summary = info.get("summary") or {}
        rows.append({"model": model, **{metric_label(k, top_k): format_mean_std(
            summary[k]["mean"], summary[k]["std"]) for k in results.metric_names if k in summary}})
    return pd.DataFrame(rows) if rows else None


def pairwise_frame(results: Results) -> pd.DataFrame | None:
    """The compact matrix of paired tests (row minus column) from metrics.json's ``pairwise``.

    Each cell reads ``+0.188 · t p=0.29 · McN p=0.022``; the diagonal is ``-``.
    """
    pair = results.metrics.get("pairwise") or {}
    models = pair.get("models") or []
    if len(models) < 2:
        return None

    def cell(i: int, j: int) -> str:
        if i == j:
            return "-"
        diff = pair["difference"][i][j]
        if diff is None:
            return "n/a"
        t, mc = pair["t_pvalue"][i][j], pair["mcnemar_pvalue"][i][j]
        return (f"{diff:+.{DECIMALS}f} · t p={'n/a' if t is None else f'{t:.2g}'}"
                f" · McN p={'n/a' if mc is None else f'{mc:.2g}'}")

    return pd.DataFrame([{"row − column": a, **{b: cell(i, j) for j, b in enumerate(models)}}
                         for i, a in enumerate(models)])


#: The metrics of the terminal table, in the order of ``metric_names`` (the primary one first).
TERMINAL_METRICS = ("accuracy", "top_k_accuracy", "balanced_accuracy")


def terminal_table(results: Results) -> str:
    """A plain-text results table for the terminal: model, accuracy, top-k, balanced accuracy, time.

    The metrics follow ``metric_names``, as ``summary.md`` does: balanced accuracy leads when
    class sizes differ more than 3x. Time is the mean over folds of fit plus predict seconds.
    """
    summary = summary_frame(results)
    folds = results.fold_table()
    top_k = results.metrics.get("top_k", 3)
    order = [m for m in results.metric_names if m in TERMINAL_METRICS]
    order += [m for m in TERMINAL_METRICS if m not in order]
    names = {"accuracy": "accuracy", "top_k_accuracy": f"top-{top_k} accuracy",
             "balanced_accuracy": "balanced accuracy"}
    header = ["model", *(names[m] for m in order), "time (s/fold)"]
    rows = []
    for model, row in summary.iterrows():
        cells = [str(model)]
        for metric in order:
            cells.append(format_mean_std(row.get(f"{metric}_mean"), row.get(f"{metric}_std")))
        mine = folds[(folds["model"] == model) & (folds["fold"] >= 0)] if not folds.empty else folds
        seconds = [c for c in ("fit_seconds", "predict_seconds") if c in mine.columns]
        total = mine[seconds].sum(axis=1).mean() if seconds and len(mine) else np.nan
        cells.append("n/a" if not np.isfinite(total) else f"{total:.1f}")
        rows.append(cells)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        # the model name is left-aligned, numbers right-aligned
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths)))

    return "\n".join([line(header), "  ".join("-" * w for w in widths), *map(line, rows)])
