"""Classical fits on a Dask cluster (the one the feature job uses), with the same configuration.

Each (training rows, test rows) split is one task: :func:`fit_splits` builds the estimator from
the unchanged :class:`~cellcompare.classical.config.ClassicalConfig`, fits it and predicts the
test rows. joblib picks where tasks run: ``backend="dask"`` sends them to the workers of the
``distributed.Client`` opened with ``scheduler`` (``tcp://host:8786``, the address given to
``cellcompare extract --scheduler``); ``"loky"`` runs them in local processes and
``"sequential"`` in this one. The numbers do not depend on the backend: every estimator is
seeded by its configuration.

Example
-------
A configuration read from YAML, two splits of twelve rows fitted in this process:

>>> import tempfile
>>> from pathlib import Path
>>> import numpy as np
>>> import pandas as pd
>>> from cellcompare.classical import ClassicalConfig
>>> from cellcompare.classical.cluster import fit_splits
>>> path = Path(tempfile.mkdtemp()) / "svm.yaml"
>>> _ = path.write_text("{name: svm, params: {C: 10}}")
>>> config = ClassicalConfig.from_yaml(path)
>>> y = np.array(["a", "b"] * 6)
>>> table = pd.DataFrame({"f1": [0.1 * i + 3.0 * (i % 2) for i in range(12)],
...                       "f2": [1.0, 0.0, 0.5] * 4})
>>> splits = [(np.arange(6), np.arange(6, 12)), (np.arange(6, 12), np.arange(6))]
>>> results = fit_splits(config, table, y, splits, backend="sequential")
>>> [est.predict(table.iloc[test]).tolist() for (est, _), (_, test) in zip(results, splits)]
[['a', 'b', 'a', 'b', 'a', 'b'], ['a', 'b', 'a', 'b', 'a', 'b']]
>>> [proba.shape for _, proba in results]
[(6, 2), (6, 2)]

On a cluster only the backend changes (this needs a running Dask scheduler, hence the skip):

>>> results = fit_splits(config, table, y, splits, backend="dask",
...                      scheduler="tcp://127.0.0.1:8786")  # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd
from joblib import Parallel, delayed, parallel_config

from cellcompare.classical.config import ClassicalConfig

__all__ = ["BACKENDS", "fit_splits"]

log = logging.getLogger(__name__)
BACKENDS = ("sequential", "loky", "dask")


def _fit_one(config: ClassicalConfig, train: pd.DataFrame, y: np.ndarray, test: pd.DataFrame):
    estimator = config.build().fit(train, y)
    return estimator, estimator.predict_proba(test)


def fit_splits(config: ClassicalConfig, table: pd.DataFrame, y: np.ndarray,
               splits: Sequence[tuple[np.ndarray, np.ndarray]], *, backend: str = "loky",
               scheduler: str | None = None, n_jobs: int = -1) -> list[tuple[object, np.ndarray]]:
    """Fit ``config``'s estimator on each split's training rows and predict its test rows.

    Parameters
    ----------
    config : ClassicalConfig
        The model configuration, as a comparison would use it.
    table : pd.DataFrame
        Feature table (``Metadata_*`` and feature columns).
    y : ndarray, shape (n_rows,)
        Labels of ``table``'s rows.
    splits : sequence of (train, test) index arrays
        Positions into ``table``, one task each.
    backend : {"sequential", "loky", "dask"}
        Where the tasks run (module doc).
    scheduler : str, optional
        Dask scheduler address for ``backend="dask"``; without it a ``distributed.Client``
        already open in this process is used.
    n_jobs : int
        Tasks at once (-1: as many as the backend offers).

    Returns
    -------
    list of (TableClassifier, ndarray)
        The fitted estimator and its ``(n_test, n_classes)`` probabilities, in split order.
    """
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, found {backend!r}")
    y = np.asarray(y)
    with contextlib.ExitStack() as stack:
        if backend == "dask" and scheduler is not None:
            from distributed import Client

            stack.enter_context(Client(scheduler))
        stack.enter_context(parallel_config(backend=backend, n_jobs=n_jobs))
        log.info("fitting %s on %d splits with joblib's %s backend", config.name, len(splits), backend)
        return Parallel()(delayed(_fit_one)(config, table.iloc[train], y[train], table.iloc[test])
                          for train, test in splits)
