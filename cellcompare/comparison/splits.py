"""Folds computed once from the image index, saved to ``folds.csv`` and reused by every model.

Splits are always by image: per-cell tables follow their image's fold (:func:`cell_folds`).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from cellcompare.atomic import atomic_path
from cellcompare.comparison.config import FoldsConfig
from cellcompare.comparison.labels import NO_GROUPS

__all__ = ["FOLD_COLUMNS", "FoldError", "LeakageError", "FoldMismatchError", "make_folds",
           "check_no_leakage", "save_folds", "load_folds", "folds_for", "fold_ids", "cell_folds"]

log = logging.getLogger(__name__)
FOLD_COLUMNS = ["sample_id", "label", "group", "fold"]
HOLDOUT = -1


class FoldError(ValueError):
    """The data cannot be split as configured (too few images or groups per class)."""


class LeakageError(FoldError):
    """An image or a group appears on both sides of a split."""


class FoldMismatchError(FoldError):
    """A saved ``folds.csv`` does not match the dataset index any more."""


def _text(values: pd.Series) -> np.ndarray:
    """``values`` as strings, a missing value (None, NaN) as ``""``: what ``folds.csv`` holds.

    A class-folder dataset has no group (``None``); as text it must equal what reading the
    saved CSV gives back, or a resumed run would find its own folds changed.
    """
    return values.astype(object).where(values.notna(), "").astype(str).to_numpy()


def _index_frame(index: pd.DataFrame, group_column: str | None) -> pd.DataFrame:
    for col in ("sample_id", "label"):
        if col not in index.columns:
            raise FoldError(f"dataset index lacks column {col!r}; found {list(index.columns)}")
    if group_column not in (None, NO_GROUPS) and group_column not in index.columns:
        raise FoldError(f"folds.group_column {group_column!r} is not a column of the dataset index; "
                        f"available: {list(index.columns)}")
    frame = pd.DataFrame({"sample_id": index["sample_id"].astype(str).to_numpy(),
                          "label": index["label"].astype(str).to_numpy()})
    source = group_column or ("group" if "group" in index.columns else None)
    if source == NO_GROUPS:  # every unit is its own group: what inner folds read
        source = None
    frame["group"] = _text(index[source]) if source is not None else frame["sample_id"].to_numpy()
    if frame.sample_id.duplicated().any():
        dupes = frame.sample_id[frame.sample_id.duplicated()].unique()[:5].tolist()
        raise FoldError(f"dataset index has duplicated sample ids, e.g. {dupes}")
    return frame


def _check_class_sizes(frame: pd.DataFrame, n_splits: int, grouped: bool,
                       unit_name: str = "images") -> None:
    counts = frame.groupby("label").size()
    small = counts[counts < n_splits]
    if len(small):
        detail = ", ".join(f"{k!r} has {v}" for k, v in small.items())
        raise FoldError(f"{n_splits}-fold cross-validation needs at least {n_splits} {unit_name} "
                        f"per class, but {detail}; use fewer folds (folds.n_splits) or drop these classes "
                        f"(dataset.exclude_classes)")
    if grouped:
        groups = frame.groupby("label")["group"].nunique()
        few = groups[groups < n_splits]
        if len(few):
            detail = ", ".join(f"{k!r} is in {v} group(s)" for k, v in few.items())
            raise FoldError(f"grouped {n_splits}-fold cross-validation needs every class in at least "
                            f"{n_splits} groups, but {detail}; a fold's test or training set would "
                            f"lack the class. Use fewer folds, another folds.group_column, or drop "
                            f"these classes")


def _holdout(frame: pd.DataFrame, fraction: float, grouped: bool, seed: int) -> np.ndarray:
    """Boolean mask of hold-out rows: one stratified (grouped) split of about ``fraction``."""
    n = max(2, int(round(1.0 / fraction)))
    if grouped and frame.group.nunique() < n:
        raise FoldError(f"folds.holdout_fraction={fraction} needs at least {n} groups to hold out "
                        f"whole groups, found {frame.group.nunique()}; lower the fraction or "
                        f"remove folds.group_column")
    splitter = (StratifiedGroupKFold(n, shuffle=True, random_state=seed) if grouped
                else StratifiedKFold(n, shuffle=True, random_state=seed))
    _, test = next(splitter.split(frame, frame.label, frame.group if grouped else None))
    mask = np.zeros(len(frame), dtype=bool)
    mask[test] = True
    return mask


def _check_fold_classes(folds: pd.DataFrame, n_splits: int) -> None:
    classes = set(folds.loc[folds.fold >= 0, "label"])
    for k in range(n_splits):
        test = set(folds.loc[folds.fold == k, "label"])
        train = set(folds.loc[(folds.fold >= 0) & (folds.fold != k), "label"])
        for side, present in (("test", test), ("training", train)):
            missing = sorted(classes - present)
            if missing:
                raise FoldError(f"fold {k}'s {side} set has no image of classes {missing} with this "
                                f"grouping; use fewer folds, another folds.group_column, or drop "
                                f"these classes")


def make_folds(index: pd.DataFrame, config: FoldsConfig, seed: int = 0, *,
               unit_name: str = "images") -> pd.DataFrame:
    """Assign every image to a fold (``-1`` = hold-out), stratified by label, grouped if asked.

    Without ``group_column``, images of one well (``comparison.wells.well_keys``: plate and
    well, or RxRx1's ``well_id``) are kept in one fold whenever some well has several sites;
    ``group_column: none`` (``comparison.labels.NO_GROUPS``) groups nothing and every unit is
    its own ``group``.

    Parameters
    ----------
    index : pd.DataFrame
        One row per image with ``sample_id``, ``label`` and the grouping column.
    config : FoldsConfig
        ``n_splits``, ``group_column`` (None: plain stratified k-fold), ``holdout_fraction``.
    seed : int
        Shuffling seed; the same index, config and seed give the same folds.
    unit_name : str
        What a row is, in the log and in messages (a task's ``unit_name``: ``images`` or
        ``cells``).

    Returns
    -------
    pd.DataFrame
        Columns ``sample_id, label, group, fold`` in the index's row order.

    Raises
    ------
    FoldError
        A class has fewer images (or groups) than folds, or a fold would lack a class.
    """
    frame = _index_frame(index, config.group_column)
    # without a group column, the sites of one well still stay together: they share a
    # treatment and a spot on the plate, so splitting them would let the test peek at training
    wells = None if config.group_column is not None else _repeated_wells(index)
    split = frame if wells is None else frame.assign(group=wells)
    named = config.group_column not in (None, NO_GROUPS)
    grouped = named or wells is not None
    split["fold"] = HOLDOUT
    cv = np.ones(len(split), dtype=bool)
    if config.holdout_fraction > 0:
        _check_class_sizes(split, 2, grouped, unit_name)
        cv = ~_holdout(split, config.holdout_fraction, grouped, seed)
    sub = split[cv]
    _check_class_sizes(sub, config.n_splits, grouped, unit_name)
    splitter = (StratifiedGroupKFold(config.n_splits, shuffle=True, random_state=seed) if grouped
                else StratifiedKFold(config.n_splits, shuffle=True, random_state=seed))
    fold = np.full(len(sub), HOLDOUT)
    for k, (_, test) in enumerate(splitter.split(sub, sub.label, sub.group if grouped else None)):
        fold[test] = k
    split.loc[cv, "fold"] = fold
    split["fold"] = split["fold"].astype(int)
    _check_fold_classes(split, config.n_splits)
    check_no_leakage(split, grouped=grouped)
    frame["fold"] = split["fold"].to_numpy()
    by = (f" grouped by {config.group_column}" if named
          else " keeping each well's sites together" if wells is not None else "")
    log.info("%d %s in %d folds%s%s", len(frame), unit_name, config.n_splits, by,
             f", {int((frame.fold == HOLDOUT).sum())} held out" if config.holdout_fraction else "")
    return frame


def _repeated_wells(index: pd.DataFrame) -> np.ndarray | None:
    """Well of every image when the layout knows wells and some well has several sites."""
    from cellcompare.comparison.wells import well_keys

    keys = well_keys(index)
    if keys is None or not keys.duplicated().any():
        return None
    return keys.to_numpy(dtype=str)


def check_no_leakage(folds: pd.DataFrame, *, grouped: bool = True,
                     cells: pd.DataFrame | None = None) -> None:
    """Raise :class:`LeakageError` when a split lets test information into training.

    Checks that each sample id appears once; when ``grouped``, that no group is in both the test
    and training set of any fold (or in both the hold-out and the folds); and when ``cells`` (a
    per-cell table with ``Metadata_sample_id``, ``fold``) is given, that the cells of an image all
    sit in that image's fold.

    Parameters
    ----------
    folds : pd.DataFrame
        ``sample_id, label, group, fold``.
    grouped : bool
        Whether groups must not straddle folds.
    cells : pd.DataFrame, optional
        Per-cell rows with the fold each was assigned to.
    """
    dupes = folds.sample_id[folds.sample_id.duplicated()]
    if len(dupes):
        raise LeakageError(f"sample ids {sorted(dupes.unique())[:5]} appear in more than one fold row; "
                           f"the same image would be in training and test")
    if grouped:
        spread = folds.groupby("group")["fold"].nunique()
        leaky = spread[spread > 1]
        if len(leaky):
            g = leaky.index[0]
            where = sorted(folds.loc[folds.group == g, "fold"].unique().tolist())
            raise LeakageError(f"group {g!r} (and {len(leaky) - 1} more) is in folds {where}: it is in "
                               f"both the test and training set of a fold")
    if cells is not None:
        expected = folds.set_index("sample_id")["fold"]
        want = cells["Metadata_sample_id"].astype(str).map(expected)
        bad = cells.loc[want.to_numpy() != cells["fold"].to_numpy(), "Metadata_sample_id"]
        if len(bad):
            raise LeakageError(f"cells of images {sorted(bad.astype(str).unique())[:5]} are split "
                               f"across folds; cells must stay with their image")


def save_folds(folds: pd.DataFrame, path: str | Path) -> Path:
    """Write ``folds.csv`` atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        folds[FOLD_COLUMNS].to_csv(tmp, index=False)
    return path


def load_folds(path: str | Path) -> pd.DataFrame:
    """Read a ``folds.csv`` written by :func:`save_folds` (ids, labels and groups as str)."""
    path = Path(path)
    folds = pd.read_csv(path, dtype={"sample_id": str, "label": str, "group": str},
                        keep_default_na=False)
    missing = [c for c in FOLD_COLUMNS if c not in folds.columns]
    if missing:
        raise FoldError(f"{path} lacks columns {missing}; expected {FOLD_COLUMNS}")
    folds["fold"] = folds["fold"].astype(int)
    return folds


def folds_for(path: str | Path, index: pd.DataFrame, config: FoldsConfig, seed: int = 0, *,
              unit_name: str = "images") -> pd.DataFrame:
    """Load ``path`` when present (checked against the index and config), else compute and save.

    ``unit_name`` is :func:`make_folds`'s (what a row is, in the log).

    Raises
    ------
    FoldMismatchError
        When the saved folds do not describe the same images, labels, groups or fold count.
    """
    path = Path(path)
    fresh = make_folds(index, config, seed, unit_name=unit_name)
    if not path.exists():
        save_folds(fresh, path)
        return fresh
    saved = load_folds(path)
    a = saved.sort_values("sample_id").reset_index(drop=True)
    b = fresh.sort_values("sample_id").reset_index(drop=True)
    for col in FOLD_COLUMNS:
        if len(a) != len(b) or not (a[col].to_numpy() == b[col].to_numpy()).all():
            raise FoldMismatchError(f"{path} does not match the dataset and folds config (column "
                                    f"{col!r} differs: {len(a)} saved rows vs {len(b)} now); the "
                                    f"results folder belongs to another run: delete it or set "
                                    f"another output")
    log.info("reusing folds from %s", path)
    return saved


def fold_ids(folds: pd.DataFrame, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Training and test sample ids of fold ``k`` (``k = -1``: all folds vs the hold-out)."""
    if k == HOLDOUT:
        return folds.sample_id[folds.fold >= 0].to_numpy(), folds.sample_id[folds.fold == HOLDOUT].to_numpy()
    train = folds.sample_id[(folds.fold >= 0) & (folds.fold != k)].to_numpy()
    return train, folds.sample_id[folds.fold == k].to_numpy()


def cell_folds(cells: pd.DataFrame, folds: pd.DataFrame) -> pd.Series:
    """Fold of every cell row: its image's fold (cells never split apart from their image)."""
    mapping = folds.set_index("sample_id")["fold"]
    return cells["Metadata_sample_id"].astype(str).map(mapping).fillna(HOLDOUT - 1).astype(int)
