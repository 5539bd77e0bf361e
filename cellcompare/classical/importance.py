"""Feature importance: XGBoost gain and permutation importance on held-out rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.utils.validation import check_is_fitted

from cellcompare.classical.models import EarlyStoppingXGB
from cellcompare.classical.tables import feature_family


def feature_importance(est, X_test: pd.DataFrame, y_test, *, n_repeats: int = 3,
                       max_rows: int | None = 5000, random_state: int | None = 0,
                       permutation: bool = True) -> pd.DataFrame:
    """Return one row per input feature: ``feature``, ``family``, ``gain``, ``permutation``.

    Parameters
    ----------
    est : TableClassifier
        A fitted estimator.
    X_test, y_test : pandas.DataFrame, array-like
        Held-out rows (never the training rows) and their labels.
    n_repeats : int
        Shuffles per feature; ``permutation`` is the mean accuracy drop.
    max_rows : int or None
        Held-out rows subsampled (seeded) to bound the ``n_features * n_repeats`` predictions.
    random_state : int or None
        Seed of the shuffles.
    permutation : bool
        Compute permutation importance. ``False`` skips it entirely (no scoring of
        ``X_test``; the labels are still validated): ``permutation`` is NaN and only ``gain``
        is filled, which is instant where the permutation loop would score the pipeline
        ``n_features * n_repeats`` times.

    Returns
    -------
    pandas.DataFrame
        Sorted by ``permutation`` then ``gain``, descending (by ``gain`` alone when
        ``permutation=False``). ``gain`` is the XGBoost total gain (0 for features dropped by
        selection; NaN for SVMs).
    """
    check_is_fitted(est, "pipeline_")
    y_test = est.check_labels(y_test)
    features = list(est.feature_names_in_)
    drops = (_permutation_drops(est, X_test, y_test, features, n_repeats, max_rows, random_state)
             if permutation else np.full(len(features), np.nan))
    table = pd.DataFrame({"feature": features, "family": [feature_family(f) for f in features],
                          "gain": _gain(est, features), "permutation": drops})
    return table.sort_values(["permutation", "gain"], ascending=False, kind="stable").reset_index(drop=True)


def _permutation_drops(est, X_test: pd.DataFrame, y_test: np.ndarray, features: list[str],
                       n_repeats: int, max_rows: int | None, random_state: int | None) -> np.ndarray:
    """Mean accuracy drop per feature when its held-out column is shuffled ``n_repeats`` times."""
    rng = np.random.default_rng(random_state)
    if max_rows is not None and len(X_test) > max_rows:
        rows = np.sort(rng.choice(len(X_test), max_rows, replace=False))
        X_test, y_test = X_test.iloc[rows], y_test[rows]
    baseline = est.score(X_test, y_test)
    drops = np.zeros(len(features))
    for j, name in enumerate(features):
        shuffled = X_test.copy()
        scores = []
        for _ in range(n_repeats):
            shuffled[name] = X_test[name].to_numpy()[rng.permutation(len(X_test))]
            scores.append(est.score(shuffled, y_test))
        drops[j] = baseline - np.mean(scores)
    return drops


def _gain(est, features: list[str]) -> np.ndarray:
    model = est.pipeline_.named_steps["model"]
    if not isinstance(model, EarlyStoppingXGB):
        return np.full(len(features), np.nan)
    kept = est.pipeline_.named_steps["scale"].columns_
    by_name = dict(zip(kept, model.gain(len(kept))))
    return np.array([by_name.get(f, 0.0) for f in features])
