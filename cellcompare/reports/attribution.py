"""Why each model decides, and how it trained: figures from the files ``comparison`` wrote.

Reads ``explain/{model}__fold{k}.gradcam.npz`` (deep models: images with their Grad-CAM maps),
``explain/{model}.features.npz`` (classical models: crops of the cells at both ends of the top
features) and the ``history`` / ``tuning_trials`` of each fold in metrics.json. Nothing here
trains or runs a model.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt  # noqa: E402  (theme selects the Agg backend first)
import numpy as np
import pandas as pd

from cellcompare.reports.figures import ReportFigure
from cellcompare.reports.images import channel_limits, composite
from cellcompare.reports.load import Results, ResultsError
from cellcompare.reports.theme import figure_to_data_uri, model_colors

__all__ = ["read_examples", "gradcam_examples", "gradcam_figure", "feature_examples_figure",
           "training_curves_figure", "tuning_frame", "explanation_section"]

GRADCAM_KEYS = ("images", "cams", "sample_id", "true_label", "predicted", "confidence")
FEATURE_KEYS = ("crops", "feature", "end", "value", "sample_id")
_GRADCAM_NAME = re.compile(r"^(?P<model>.+)__fold(?P<fold>-?\d+)\.gradcam\.npz$")
_FEATURES_NAME = re.compile(r"^(?P<model>.+)\.features\.npz$")


def read_examples(path: Path, keys: Sequence[str]) -> dict[str, np.ndarray]:
    """The arrays of one ``explain/*.npz`` file.

    Raises
    ------
    ResultsError
        The file cannot be read or lacks one of ``keys``.
    """
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise ResultsError(f"{path}: not a readable .npz file ({exc})") from exc
    missing = [k for k in keys if k not in arrays]
    if missing:
        raise ResultsError(f"{path}: missing arrays {missing}; found {sorted(arrays)}")
    lengths = {k: len(arrays[k]) for k in keys}
    if len(set(lengths.values())) > 1:
        raise ResultsError(f"{path}: arrays differ in length {lengths}")
    return arrays


def gradcam_examples(files: Sequence[Path]) -> dict[str, dict[str, np.ndarray]]:
    """All folds' Grad-CAM examples per deep model (arrays concatenated, ``fold`` added)."""
    parts: dict[str, list[dict[str, np.ndarray]]] = {}
    for path in files:
        match = _GRADCAM_NAME.match(path.name)
        if match is None:
            continue
        arrays = read_examples(path, GRADCAM_KEYS)
        arrays["fold"] = np.full(len(arrays["sample_id"]), int(match["fold"]))
        parts.setdefault(match["model"], []).append(arrays)
    out = {}
    for model, chunks in parts.items():
        shapes = {c["images"].shape[1:] for c in chunks}
        if len(shapes) > 1:
            raise ResultsError(f"explain/{model}__fold*.gradcam.npz: image shapes differ {shapes}")
        out[model] = {k: np.concatenate([c[k] for c in chunks]) for k in (*GRADCAM_KEYS, "fold")}
        out[model]["channels"] = chunks[0].get("channels", np.asarray([], dtype=str))
        out[model]["granularity"] = str(chunks[0].get("granularity", "image"))
    return out


def _pick(examples: dict[str, np.ndarray], cls: str, correct: bool, n: int) -> np.ndarray:
    ok = examples["predicted"] == examples["true_label"]
    mine = np.flatnonzero((examples["true_label"] == cls) & (ok == correct))
    order = np.argsort(-examples["confidence"][mine], kind="stable")
    return mine[order][:n]


def gradcam_figure(model: str, examples: dict[str, np.ndarray], classes: Sequence[str], *,
                   per_class: int = 2, max_classes: int = 8) -> ReportFigure:
    """Grid of Grad-CAM overlays: one row per class, correct images left, wrong ones right."""
    shown = [c for c in classes if np.any(examples["true_label"] == c)][:max_classes]
    cols = 2 * per_class
    fig, axes = plt.subplots(len(shown), cols, squeeze=False,
                             figsize=(1.9 * cols, 2.0 * len(shown) + 0.3))
    for row, cls in enumerate(shown):
        picks = [*_pick(examples, cls, True, per_class)] + [None] * per_class
        picks = picks[:per_class] + [*_pick(examples, cls, False, per_class)] + [None] * per_class
        for col, index in enumerate(picks[:cols]):
            ax = axes[row, col]
            ax.set_axis_off()
            if col == 0:
                ax.text(-0.08, 0.5, cls, transform=ax.transAxes, rotation=90, ha="right",
                        va="center", fontsize=9)
            if index is None:
                continue
            image = examples["images"][index].astype(np.float32) / 255.0
            # the image in grey under the map, so that the map's colours read as attention
            ax.imshow(composite(image, size=max(image.shape[1:])).mean(axis=2), cmap="gray",
                      vmin=0, vmax=1)
            ax.imshow(examples["cams"][index].astype(np.float32) / 255.0, cmap="inferno",
                      alpha=0.5, vmin=0, vmax=1)
            conf = float(examples["confidence"][index])
            predicted = str(examples["predicted"][index])
            title = (f"right, p={conf:.2f}" if predicted == cls else f"as {predicted}, p={conf:.2f}")
            ax.set_title(title, fontsize=8, color="black" if predicted == cls else "#d55e00")
    fig.suptitle(f"{model}: correct (left {per_class}) and wrong (right {per_class}) per class",
                 fontsize=10)
    fig.tight_layout()
    more = f" (first {len(shown)} of {len(classes)} classes)" if len(classes) > len(shown) else ""
    what = ("single-cell crops (the model's input; each crop's own prediction)"
            if examples.get("granularity") == "cell" else "images")
    caption = (f"{model}: test {what} pooled over folds{more}, each in grey with its Grad-CAM "
               "map for the predicted class on top (bright yellow = the region that raised that "
               "class's score most, dark = none). "
               "Look at whether the bright regions sit on cells and on the compartment that "
               "differs between classes; attention on background, borders or debris means the "
               "model found a shortcut.")
    return ReportFigure(f"Where {model} looks", figure_to_data_uri(fig), caption)


def feature_examples_figure(model: str, data: dict[str, np.ndarray]) -> ReportFigure:
    """Per top feature, crops of the cells with the lowest (left) and highest (right) values."""
    features = list(dict.fromkeys(data["feature"].astype(str)))
    per_end = max(int(np.sum((data["feature"] == f) & (data["end"] == e)))
                  for f in features for e in ("low", "high"))
    cols = 2 * per_end
    limits = channel_limits(data["crops"].astype(np.float32) / 255.0)
    fig = plt.figure(figsize=(1.45 * cols, 1.95 * len(features)), layout="constrained")
    # one sub-figure per feature, so that its (long) name heads the row without squeezing crops
    for subfig, feature in zip(np.atleast_1d(fig.subfigures(len(features), 1)), features):
        subfig.suptitle(feature, x=0.01, ha="left", fontsize=9, fontweight="bold")
        axes = subfig.subplots(1, cols, squeeze=False)[0]
        for half, end in enumerate(("low", "high")):
            index = np.flatnonzero((data["feature"] == feature) & (data["end"] == end))
            for k in range(per_end):
                ax = axes[half * per_end + k]
                ax.set_axis_off()
                if k >= len(index):
                    continue
                crop = data["crops"][index[k]].astype(np.float32) / 255.0
                ax.imshow(composite(crop, size=max(crop.shape[1:]), limits=limits))
                ax.set_title(f"{end} {float(data['value'][index[k]]):.3g}", fontsize=8)
    caption = (f"{model}'s most important features (mean gain over folds), each with the "
               f"{per_end} cells of lowest (left) and highest (right) value in the whole data set, "
               "cut from the images around the cell's centre and shown with one contrast for all "
               "crops, so brightness is comparable. Look at whether the difference "
               "between the two ends is a visible, biological property or an artefact "
               "(fragments, clumps, cells cut by the image border).")
    return ReportFigure(f"What {model}'s top features measure", figure_to_data_uri(fig), caption)


def training_curves_figure(model: str, folds: Sequence[dict[str, Any]]) -> ReportFigure | None:
    """Loss and accuracy per epoch, training (solid) and inner validation (dashed), per fold."""
    histories = [(f["fold"], pd.DataFrame(f["history"])) for f in folds if f.get("history")]
    if not histories:
        return None
    colors = model_colors([f"fold {k}" for k, _ in histories])
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.4))
    for ax, what in zip(axes, ("loss", "accuracy")):
        for fold, frame in histories:
            color = colors[f"fold {fold}"]
            label = "hold-out" if fold == -1 else f"fold {fold}"
            if f"train_{what}" in frame:
                ax.plot(frame["epoch"], frame[f"train_{what}"], color=color, marker="o",
                        markersize=3, label=f"{label} train")
            if f"val_{what}" in frame:
                ax.plot(frame["epoch"], frame[f"val_{what}"], color=color, linestyle="--",
                        marker="s", markersize=3, label=f"{label} validation")
        ax.set(xlabel="epoch", ylabel=what, title=f"{model}: {what}")
    axes[1].legend(fontsize=8, bbox_to_anchor=(1.01, 1), loc="upper left")
    fig.tight_layout()
    caption = (f"{model}: per epoch, on the training images (solid) and on the inner validation "
               "split of the fold's training images (dashed), one colour per fold. Training "
               "loss falling while validation loss rises means over-fitting; both flat and "
               "high means the model did not learn (too few epochs, too high a learning rate, "
               "or too little data).")
    return ReportFigure(f"Training curves: {model}", figure_to_data_uri(fig), caption)


def tuning_frame(folds: Sequence[dict[str, Any]]) -> pd.DataFrame | None:
    """One row per tuning trial of every fold (parameters, validation score, seconds)."""
    rows = []
    for fold in folds:
        for trial in fold.get("tuning_trials") or []:
            params = trial.get("params")
            flat = {**(params if isinstance(params, dict) else {}),
                    **{k: v for k, v in trial.items() if k != "params"}}
            rows.append({"fold": "hold-out" if fold["fold"] == -1 else str(fold["fold"]), **flat})
    return pd.DataFrame(rows) if rows else None


def explanation_section(results: Results, frame_rows) -> dict[str, Any]:
    """Context of the "why each model decides" and "training" sections.

    ``frame_rows`` formats a DataFrame for the template's table macro.
    """
    examples = gradcam_examples(results.explain_files)
    deep, classical = [], []
    for model, arrays in examples.items():
        deep.append({"model": model, "figure": gradcam_figure(model, arrays, results.classes)})
    for path in results.explain_files:
        match = _FEATURES_NAME.match(path.name)
        if match:
            data = read_examples(path, FEATURE_KEYS)
            classical.append({"model": match["model"],
                              "figure": feature_examples_figure(match["model"], data)})
    training = []
    for model, info in results.metrics["models"].items():
        folds = info.get("folds") or []
        curves = training_curves_figure(model, folds)
        trials = tuning_frame(folds)
        if curves is not None or trials is not None:
            training.append({"model": model, "figure": curves,
                             "trials": None if trials is None else frame_rows(trials)})
    return {"deep": deep, "classical": classical, "training": training}
