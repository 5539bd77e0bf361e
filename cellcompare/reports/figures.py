"""The report's plots; each returns a :class:`ReportFigure` whose caption says what to look at."""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import matplotlib.pyplot as plt  # noqa: E402  (theme selects the Agg backend first)
import numpy as np
import pandas as pd
import seaborn as sns  # noqa: E402
from matplotlib import MatplotlibDeprecationWarning  # noqa: E402

from cellcompare.reports.load import lower_is_better
from cellcompare.reports.theme import (
    HEATMAP_CMAP,
    PALETTE,
    figure_to_data_uri,
    model_colors,
)

__all__ = ["ReportFigure", "counts_figure", "fold_scores_figure", "confusion_figure",
           "recall_figure", "cost_figure", "cells_per_image_figure", "importance_figure",
           "normalised_confusion"]


@dataclass(frozen=True)
class ReportFigure:
    """One embedded figure: a title, a PNG data URI and a caption."""

    title: str
    uri: str
    caption: str


def counts_figure(class_counts: Mapping[str, int], group_counts: Mapping[str, int],
                  *, max_bars: int = 30) -> ReportFigure:
    """Bar plots of images per class and per group (a histogram when there are many)."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    for ax, counts, what in ((axes[0], class_counts, "class"), (axes[1], group_counts, "group")):
        series = pd.Series(counts, dtype=float).sort_index()
        if series.empty:
            ax.text(0.5, 0.5, f"no {what} counts recorded", ha="center", va="center")
            ax.set_axis_off()
        elif len(series) > max_bars:
            sns.histplot(series.to_numpy(), ax=ax, discrete=True,
                         color=sns.color_palette(PALETTE)[0])
            ax.set(xlabel=f"images per {what}", ylabel=f"number of {what}es",
                   title=f"{len(series)} {what}es")
        else:
            sns.barplot(x=series.index.astype(str), y=series.to_numpy(), ax=ax,
                        color=sns.color_palette(PALETTE)[0])
            ax.set(xlabel=what, ylabel="images", title=f"Images per {what}")
            ax.tick_params(axis="x", rotation=45 if len(series) > 6 else 0)
    fig.tight_layout()
    caption = ("Images per class (left) and per group (right). Look for imbalance: a class with "
               "far fewer images gets a noisier recall, and uneven groups make folds uneven.")
    return ReportFigure("Class and group counts", figure_to_data_uri(fig), caption)


def fold_scores_figure(folds: pd.DataFrame, metrics: Sequence[str], *,
                       labels: Sequence[str] | None = None) -> ReportFigure:
    """Box plot with one dot per fold for each model and metric."""
    metrics = [m for m in metrics if m in folds.columns]
    models = list(dict.fromkeys(folds["model"]))
    colors = model_colors(models)
    fig, axes = plt.subplots(1, len(metrics), figsize=(2.6 * len(metrics) + 1, 3.6), squeeze=False)
    labels = dict(zip(metrics, labels or metrics))
    for ax, metric in zip(axes[0], metrics):
        with warnings.catch_warnings():  # seaborn 0.13 passes matplotlib's deprecated `vert`
            warnings.simplefilter("ignore", MatplotlibDeprecationWarning)
            sns.boxplot(data=folds, x="model", y=metric, hue="model", order=models,
                        palette=colors, ax=ax, showfliers=False, boxprops={"alpha": 0.35},
                        legend=False)
        sns.stripplot(data=folds, x="model", y=metric, hue="model", order=models, palette=colors,
                      ax=ax, size=6, jitter=0.15, edgecolor="black", linewidth=0.6, legend=False)
        better = "lower is better" if lower_is_better(metric) else "higher is better"
        ax.set(title=labels[metric].replace(" (lower is better)", ""), xlabel="", ylabel=better)
        ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    caption = ("Each dot is one cross-validation fold; the box spans the folds' quartiles. "
               "Look at whether the models' dots overlap: a gap smaller than the fold-to-fold "
               "spread is not a reliable difference (see the paired tests below).")
    return ReportFigure("Scores per fold", figure_to_data_uri(fig), caption)


def normalised_confusion(matrices: Sequence[Sequence[Sequence[float]]]) -> np.ndarray:
    """Sum per-fold confusion counts and divide each row (true class) by its total."""
    total = np.sum(np.asarray(matrices, dtype=float), axis=0)
    rows = total.sum(axis=1, keepdims=True)
    return np.divide(total, rows, out=np.zeros_like(total), where=rows > 0)


def confusion_figure(model: str, matrix: np.ndarray, classes: Sequence[str]) -> ReportFigure:
    """Heatmap of a row-normalised confusion matrix (rows: true class)."""
    n = len(classes)
    size = min(2.5 + 0.45 * n, 12)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    sns.heatmap(matrix, ax=ax, vmin=0, vmax=1, cmap=HEATMAP_CMAP, square=True,
                annot=n <= 12, fmt=".2f", xticklabels=classes, yticklabels=classes,
                cbar_kws={"label": "fraction of true class"})
    ax.set(xlabel="predicted class", ylabel="true class", title=model)
    fig.tight_layout()
    caption = (f"{model}: each row is a true class and sums to 1 over all folds. A bright "
               "diagonal means correct predictions; bright off-diagonal cells show which "
               "classes this model mixes up.")
    return ReportFigure(f"Confusion matrix: {model}", figure_to_data_uri(fig), caption)


def recall_figure(recall: pd.DataFrame, *, max_classes: int = 30) -> ReportFigure:
    """Per-class recall per model: grouped bars, or its distribution when classes are many.

    ``recall`` is long form with columns ``model``, ``class``, ``recall`` (mean over folds).
    """
    models = list(dict.fromkeys(recall["model"]))
    colors = model_colors(models)
    n_classes = recall["class"].nunique()
    if n_classes > max_classes:
        fig, ax = plt.subplots(figsize=(7, 3.6))
        sns.ecdfplot(data=recall, x="recall", hue="model", hue_order=models, palette=colors, ax=ax)
        ax.set(xlabel="recall of a class (mean over folds)", ylabel="fraction of classes")
        caption = (f"Distribution of recall over the {n_classes} classes: a curve further to the "
                   "right means more classes are recognised well. The worst classes are listed "
                   "in the table below.")
    else:
        fig, ax = plt.subplots(figsize=(max(6, 0.6 * n_classes * len(models) + 2), 3.6))
        sns.barplot(data=recall, x="class", y="recall", hue="model", hue_order=models,
                    palette=colors, ax=ax)
        ax.set(ylim=(0, 1.05), xlabel="true class", ylabel="recall (mean over folds)")
        ax.tick_params(axis="x", rotation=45 if n_classes > 6 else 0)
        ax.legend(title="model", bbox_to_anchor=(1.01, 1), loc="upper left")
        caption = ("Fraction of each class's images predicted correctly. Look for classes where "
                   "the models disagree: that is where one approach captures something the "
                   "other misses.")
    fig.tight_layout()
    return ReportFigure("Recall per class", figure_to_data_uri(fig), caption)


def cost_figure(folds: pd.DataFrame) -> ReportFigure:
    """Bars of fit time, predict time and peak memory per model (mean over folds)."""
    columns = [("fit_seconds", "fit time (s)"), ("predict_seconds", "predict time (s)"),
               ("peak_memory_mb", "peak memory (MB)")]
    columns = [(c, label) for c, label in columns if c in folds.columns]
    models = list(dict.fromkeys(folds["model"]))
    colors = model_colors(models)
    fig, axes = plt.subplots(1, len(columns), figsize=(3.3 * len(columns), 3.2), squeeze=False)
    for ax, (column, label) in zip(axes[0], columns):
        sns.barplot(data=folds, x="model", y=column, hue="model", order=models, palette=colors,
                    ax=ax, errorbar="sd", legend=False)
        ax.set(xlabel="", ylabel=label, title=label)
        ax.tick_params(axis="x", rotation=30)
    fig.tight_layout()
    caption = ("Mean cost per fold (error bars: standard deviation over folds). Look at whether "
               "a gain in accuracy is worth the extra training time or memory.")
    return ReportFigure("Time and memory", figure_to_data_uri(fig), caption)


def cells_per_image_figure(counts: np.ndarray) -> ReportFigure:
    """Histogram of segmented cells per image."""
    fig, ax = plt.subplots(figsize=(6, 3))
    sns.histplot(counts, ax=ax, color=sns.color_palette(PALETTE)[2], discrete=len(counts) < 200)
    ax.set(xlabel="cells per image", ylabel="images")
    fig.tight_layout()
    caption = ("Cells found per image by the segmentation. Look for images with zero or very "
               "few cells (failed segmentation or empty fields) and for extreme outliers "
               "(clumps split into fragments).")
    return ReportFigure("Cells per image", figure_to_data_uri(fig), caption)


def importance_figure(top: pd.DataFrame, model: str, score: str) -> ReportFigure:
    """Horizontal bars of the top features, coloured by CellProfiler family."""
    fig, ax = plt.subplots(figsize=(6.5, 0.3 * len(top) + 1.2))
    families = list(dict.fromkeys(top["family"].astype(str)))
    # families take the palette's later colours so they are not mistaken for model colours
    colors = sns.color_palette(PALETTE)[3:]
    palette = {fam: colors[i % len(colors)] for i, fam in enumerate(families)}
    sns.barplot(data=top.assign(family=top["family"].astype(str)), y="feature", x=score,
                hue="family", hue_order=families, palette=palette, dodge=False, ax=ax)
    ax.set(xlabel=f"{score} importance (mean over folds)", ylabel="", title=model)
    ax.legend(title="family", loc="lower right", fontsize=9)
    ax.tick_params(axis="y", labelsize=9)
    fig.tight_layout()
    caption = (f"The {len(top)} features {model} relied on most ({score}). Look at which "
               "feature families dominate: they tell which cell property (shape, intensity, "
               "texture, ...) separates the classes.")
    return ReportFigure(f"Top features: {model}", figure_to_data_uri(fig), caption)
