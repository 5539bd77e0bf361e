"""Check class, fold and group counts against what each model needs, before any heavy work.

:func:`preflight` runs right after the configuration and the dataset index are read (seconds,
even at RxRx1's 125k sites): it computes the folds the run will use (``splits.make_folds``, the
same seed, so ``folds.csv`` agrees) and counts, per fold, the training images of every class.
A cell task (``labels.level: cell``) is checked the same way once its cells are labelled,
counting cells, and refused rather than lowered (see :func:`preflight`).
Each model needs a least count per class:

====================  ==================================  =========================================
model                 needs (training images per class)   rule when a fold has fewer
====================  ==================================  =========================================
svm, linear_svm       ``calibration_folds`` (default 3)   lowered to the count when that is >= 2,
                                                          else the run stops
svm, many classes     2 (temperature split, see            temperature 1 (softmax of the decision
(``classical.scale``) ``classical.scale``)                 values); noted
xgboost               2 (early-stopping split)            the run stops
any classical, tune   ``inner_folds`` (default 3)         lowered to the count when >= 2, else the
                                                          run stops
deep models           2 (validation split, early stop)    trains without validation / early
                                                          stopping (``deep.classifier``); noted
====================  ==================================  =========================================

A lowered setting is written into the model's params for this run and said in
``metrics.json`` (``preflight`` and the model's ``notes``). A stop raises :class:`PreflightError`
with the counts summarised, the first few classes named and the fix suggested.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from cellcompare.comparison.config import CompareConfig, ModelSpec
from cellcompare.comparison.adapters import model_kind
from cellcompare.comparison.splits import HOLDOUT, FoldError, make_folds

__all__ = ["Need", "Preflight", "PreflightError", "model_needs", "preflight", "training_counts"]

log = logging.getLogger(__name__)
#: Classes named in a message before "... (+n more)".
SHOWN = 3


class PreflightError(FoldError):
    """The data cannot feed a configured model; the message summarises counts and the fix."""


@dataclass(frozen=True)
class Need:
    """One requirement of one model: ``needed`` training images per class for ``what``.

    ``param`` is the model parameter a fold with fewer may lower (down to ``floor``); ``None``
    with ``floor < needed`` means the model degrades by itself (``degraded`` says how).
    """

    label: str
    what: str
    needed: int
    floor: int
    param: str | None = None
    degraded: str = ""


def _head(names: list[str]) -> str:
    shown = ", ".join(repr(n) for n in names[:SHOWN])
    return shown + (f", ... (+{len(names) - SHOWN} more)" if len(names) > SHOWN else "")


def model_needs(spec: ModelSpec, n_classes: int) -> list[Need]:
    """The per-class training counts ``spec`` needs with ``n_classes`` classes (see module doc)."""
    params = spec.params
    if model_kind(spec.name) == "deep":
        if float(params.get("val_fraction", 0.15)) <= 0:
            return []
        return [Need(spec.label, "validation split (early stopping)", 2, 1,
                     degraded="trains on every image without validation or early stopping")]
    needs = []
    if spec.name in ("svm", "linear_svm"):
        from cellcompare.classical.scale import MANY_CLASSES

        many = int(params.get("many_classes", MANY_CLASSES))
        if spec.name == "svm" and n_classes > many:
            needs.append(Need(spec.label, "temperature split (one-vs-rest linear)", 2, 1,
                              degraded="probabilities are the softmax of the decision values "
                                       "(temperature 1)"))
        else:
            needs.append(Need(spec.label, "calibration folds", int(params.get("calibration_folds", 3)),
                              2, param="calibration_folds"))
    elif spec.name == "xgboost":
        needs.append(Need(spec.label, "early-stopping split", 2, 2))
    if params.get("tune", False):
        needs.append(Need(spec.label, "inner tuning folds", int(params.get("inner_folds", 3)), 2,
                          param="inner_folds"))
    return needs


def training_counts(folds: pd.DataFrame) -> pd.DataFrame:
    """Training images per class (rows) in each fold (columns), from ``folds.csv``'s frame."""
    cv = folds[folds.fold >= 0]
    fold_list = sorted(cv.fold.unique())
    if (folds.fold == HOLDOUT).any():
        fold_list.append(HOLDOUT)
    total = cv.groupby("label").size()
    classes = sorted(folds.label.unique())
    columns = {}
    for k in fold_list:
        test = cv[cv.fold == k].groupby("label").size() if k != HOLDOUT else 0
        columns[int(k)] = (total - test).reindex(classes).fillna(0).astype(int)
    return pd.DataFrame(columns, index=pd.Index(classes, name="label"))


@dataclass(frozen=True)
class Preflight:
    """What :func:`preflight` found: the run's config (settings lowered by rule) and a record."""

    config: CompareConfig
    report: dict[str, Any]

    def notes(self, label: str) -> list[str]:
        """Notes on model ``label`` (lowered settings, degraded steps)."""
        return list(self.report.get("notes", {}).get(label, []))


def _count_problems(index: pd.DataFrame, folds: Any, unit: str) -> list[str]:
    """Classes with fewer units (or plates / groups) than folds, summarised."""
    k, group = folds.n_splits, folds.group_column
    labels = index["label"].astype(str)
    problems = []
    if labels.nunique() < 2:
        problems.append(f"the dataset has {labels.nunique()} class(es); a comparison needs 2 or more")
    units = labels.value_counts()
    small = sorted(units[units < k].index)
    if small:
        problems.append(f"{k}-fold cross-validation needs {k} {unit} per class; {len(small)} of "
                        f"{len(units)} classes have fewer ({_counted(small, units, unit)})")
    if group is not None and group in index.columns:
        groups = index.assign(label=labels).groupby("label")[group].nunique()
        few = sorted(groups[groups < k].index)
        if few:
            problems.append(f"folds grouped by {group!r} need every class in {k} groups; "
                            f"{len(few)} of {len(groups)} classes are in fewer ({_head(few)}; "
                            f"fewest {int(groups.min())})")
    return problems


def _counted(names: list[str], counts: pd.Series, unit: str) -> str:
    """``'a' (4 cells), 'b' (2 cells)``: the first few classes with their counts."""
    shown = ", ".join(f"{n!r} ({int(counts[n])} {unit})" for n in names[:SHOWN])
    return shown + (f", ... (+{len(names) - SHOWN} more)" if len(names) > SHOWN else "")


def _fix(config: CompareConfig, unit: str) -> str:
    return (f"Fix: use fewer folds (folds.n_splits is {config.folds.n_splits}), add {unit} of "
            f"these classes, or drop them (dataset.exclude_classes); a model's own setting can be "
            f"lowered in its params (calibration_folds, inner_folds).")


def _check_need(need: Need, counts: pd.DataFrame, totals: pd.Series,
                unit: str) -> tuple[str | None, int | None, str | None]:
    """``(problem, lowered value, note)`` for one need against the training counts."""
    per_fold = counts.min(axis=0)
    have = int(per_fold.min())
    if have >= need.needed:
        return None, None, None
    fold = int(per_fold.idxmin())
    short = sorted(counts.index[counts[fold] < need.needed])
    where = (f"fold {fold} leaves {len(short)} of {len(counts)} classes with fewer ({_head(short)}; "
             f"smallest {have}; in all: {_counted(short, totals, unit)})")
    if have >= need.floor and need.param is not None:
        return None, have, (f"{need.label}: {need.param} lowered from {need.needed} to {have} "
                            f"({need.what}): {where}")
    if have >= need.floor:
        return None, None, f"{need.label}: {need.degraded} ({need.what} needs {need.needed}; {where})"
    return (f"{need.label} needs {need.floor} training {unit} per class for its {need.what}; "
            f"{where}"), None, None


def _scale_note(spec: ModelSpec, n_classes: int) -> str | None:
    """What ``classical.scale`` changes for ``spec`` at ``n_classes`` classes (None: nothing)."""
    from cellcompare.classical.scale import MANY_CLASSES, bounded_xgb_params

    many = int(spec.params.get("many_classes", MANY_CLASSES))
    if spec.name == "svm" and n_classes > many:
        return (f"{spec.label}: {n_classes} classes (> {many}): one-vs-rest linear SVMs "
                f"(classical.scale.OvRLinearSVM) instead of {n_classes * (n_classes - 1) // 2} "
                f"one-vs-one RBF problems")
    if spec.name == "xgboost":
        return bounded_xgb_params(n_classes, dict(spec.params), many_classes=many)[1]
    return None


def preflight(config: CompareConfig, index: pd.DataFrame, *, task: Any = None) -> Preflight:
    """Check ``config``'s models against the units of the run before any heavy work.

    Parameters
    ----------
    config : CompareConfig
        The run's configuration.
    index : pd.DataFrame
        The units (``sample_id``, ``label`` and the grouping column): the dataset index, one
        row per image, or a cell task's ``index``, one row per labelled cell.
    task : comparison.task.CellTask, optional
        A cell task, checked once its cells are labelled (``labels.level: cell`` is not
        checked without it). Its units are cells and its folds ``task.folds``; no setting is
        lowered for it: a class short of cells is refused, naming it and its count, since more
        cells of it can be labelled. Tuning folds, grouped like the outer folds, count groups.

    Returns
    -------
    Preflight
        ``config`` with settings lowered by the module's rules, and a record for metrics.json
        (``train_images_per_class`` summary -- units of the task --, ``adjusted`` params,
        ``notes`` per model label).

    Raises
    ------
    PreflightError
        When a class has fewer units or groups than folds, or a fold leaves fewer training
        units per class than a model can work with; counts summarised, the fix suggested.

    Examples
    --------
    >>> import pandas as pd
    >>> from cellcompare.comparison.config import CompareConfig, FoldsConfig, ModelSpec
    >>> from cellcompare.comparison.preflight import preflight
    >>> index = pd.DataFrame({"sample_id": [f"s{i}" for i in range(12)], "label": ["a", "b"] * 6,
    ...                       "group": ["p1", "p2", "p3"] * 4})
    >>> config = CompareConfig(models=(ModelSpec("svm", "svm"),), folds=FoldsConfig(n_splits=3))
    >>> pre = preflight(config, index)
    >>> pre.report["n_classes"], pre.report["train_images_per_class"]["min"]
    (2, 4)
    """
    start = time.perf_counter()
    if config.labels.level != "image" and task is None:
        return Preflight(config, {"checked": False, "reason": "labels.level: cell: checked once "
                                                              "the cells are labelled"})
    folds_config = task.folds if task is not None else config.folds
    unit = task.unit_name if task is not None else "images"
    problems = _count_problems(index, folds_config, unit)
    if problems:
        raise PreflightError("preflight: " + "; ".join(problems) + ". " + _fix(config, unit))
    try:
        folds = make_folds(index, folds_config, config.seed, unit_name=unit)
    except FoldError as exc:  # e.g. a fold's test side lacks a class: keep the message short
        text = str(exc)
        raise PreflightError(f"preflight: {text[:400]}{' ...' if len(text) > 400 else ''}") from exc
    counts = training_counts(folds)
    # a cell task's tuning folds are grouped like its folds: they count groups
    group_counts = (training_counts(folds.drop_duplicates(["group", "label"]))
                    if task is not None else counts)
    totals = index["label"].astype(str).value_counts()
    n_classes = len(counts)
    notes: dict[str, list[str]] = {}
    adjusted: dict[str, dict[str, int]] = {}
    specs = []
    for spec in config.models:
        params = dict(spec.params)
        for need in model_needs(spec, n_classes):
            if task is not None:  # cells: refuse rather than lower or degrade
                need = dataclasses.replace(need, floor=need.needed)
            grouped = task is not None and need.param == "inner_folds"
            problem, lowered, note = _check_need(need, group_counts if grouped else counts, totals,
                                                 "groups" if grouped else unit)
            if problem:
                problems.append(problem)
            if lowered is not None:
                params[need.param] = lowered
                adjusted.setdefault(spec.label, {})[need.param] = lowered
            if note:
                log.warning("preflight: %s", note)
                notes.setdefault(spec.label, []).append(note)
        switch = _scale_note(spec, n_classes)
        if switch:
            notes.setdefault(spec.label, []).append(switch)
        specs.append(dataclasses.replace(spec, params=params))
    if problems:
        summary = (f"training {unit} per class over {counts.shape[1]} folds: min "
                   f"{int(counts.values.min())}, median {float(np.median(counts.values)):g}, max "
                   f"{int(counts.values.max())}")
        raise PreflightError("preflight: " + "; ".join(problems) + f" ({summary}). "
                             + _fix(config, unit))
    seconds = time.perf_counter() - start
    log.info("preflight: %d classes, %d %s, %d folds checked in %.2f s", n_classes, len(index),
             unit, counts.shape[1], seconds)
    report = {"checked": True, "unit": unit, "n_classes": n_classes, "n_images": len(index),
              "train_images_per_class": {"min": int(counts.values.min()),
                                         "median": float(np.median(counts.values)),
                                         "max": int(counts.values.max())},
              "adjusted": adjusted, "notes": notes, "seconds": seconds}
    return Preflight(config.replace(models=tuple(specs)), report)
