"""Budgeted hyperparameter search by inner stratified (group) cross-validation."""

from __future__ import annotations

import logging
import time

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.metrics import log_loss
from sklearn.model_selection import (
    ParameterSampler,
    StratifiedGroupKFold,
    StratifiedKFold,
)

logger = logging.getLogger(__name__)


def inner_splits(y: np.ndarray, groups: np.ndarray | None, n_splits: int, random_state: int | None):
    """Return inner (train, validation) index pairs: stratified, grouped when ``groups`` is given."""
    if groups is not None and len(np.unique(groups)) >= n_splits:
        cv = StratifiedGroupKFold(n_splits, shuffle=True, random_state=random_state)
        return list(cv.split(np.zeros(len(y)), y, groups))
    cv = StratifiedKFold(n_splits, shuffle=True, random_state=random_state)
    return list(cv.split(np.zeros(len(y)), y))


def search(pipeline, X: pd.DataFrame, y: np.ndarray, *, space: dict[str, list], n_candidates: int,
           seconds: float | None, splits, random_state: int | None) -> tuple[dict, list[dict]]:
    """Pick the candidate with the lowest mean inner-fold log-loss.

    Parameters
    ----------
    pipeline : sklearn.pipeline.Pipeline
        Unfitted pipeline; candidates are set as ``model__{param}``.
    X : pandas.DataFrame
        Training rows only.
    y : ndarray of int
        Encoded training labels.
    space : dict
        Parameter name (without the ``model__`` prefix) to candidate values.
    n_candidates : int
        At most this many candidates are evaluated (sampled with ``random_state``).
    seconds : float or None
        Stop starting new candidates after this many seconds (one is always evaluated).
    splits : list of (train, validation) index arrays
        The inner folds.

    Returns
    -------
    best_params : dict
        Chosen values (without prefix).
    results : list of dict
        ``params``, ``mean_log_loss`` and ``seconds`` of each evaluated candidate.
    """
    labels = np.unique(y)
    candidates = list(ParameterSampler(space, n_iter=min(n_candidates, _size(space)),
                                       random_state=random_state))
    results: list[dict] = []
    start = time.perf_counter()
    for params in candidates:
        if results and seconds is not None and time.perf_counter() - start > seconds:
            logger.info("tuning: time budget of %.0f s spent after %d candidates", seconds, len(results))
            break
        t0 = time.perf_counter()
        losses = []
        for train, val in splits:
            model = clone(pipeline).set_params(**{f"model__{k}": v for k, v in params.items()})
            model.fit(X.iloc[train], y[train])
            losses.append(log_loss(y[val], model.predict_proba(X.iloc[val]), labels=labels))
        results.append({"params": params, "mean_log_loss": float(np.mean(losses)),
                        "seconds": time.perf_counter() - t0})
        logger.info("tuning: %s -> log-loss %.4f", params, results[-1]["mean_log_loss"])
    best = min(results, key=lambda r: r["mean_log_loss"])
    return dict(best["params"]), results


def _size(space: dict[str, list]) -> int:
    return int(np.prod([len(v) for v in space.values()]))
