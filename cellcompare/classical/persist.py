"""Model persistence (joblib + JSON sidecar) and the top-k helper."""

from __future__ import annotations

import json
import logging
import platform
from pathlib import Path

import joblib
import pandas as pd

from cellcompare import atomic
from cellcompare.classical.errors import FeatureMismatchError
from cellcompare.classical.tables import feature_columns, table_sha256
from cellcompare.provenance import package_versions

logger = logging.getLogger(__name__)

MODEL_FILE = "model.joblib"
SIDECAR_FILE = "model.json"
_PACKAGES = ("scikit-learn", "xgboost", "numpy", "pandas", "joblib")


def _versions() -> dict[str, str | None]:
    return {"python": platform.python_version(), **package_versions(_PACKAGES)}


def save_model(est, directory: str | Path, *, train_table: pd.DataFrame | None = None) -> Path:
    """Write ``est`` to ``directory/model.joblib`` and a JSON sidecar ``model.json``.

    The sidecar records the feature names, classes, chosen parameters, package versions and
    the sha256 of the training table (when given).

    Returns
    -------
    pathlib.Path
        The directory written.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with atomic.atomic_path(directory / MODEL_FILE) as tmp:
        joblib.dump(est, tmp)
    sidecar = {
        "estimator": type(est).__name__,
        "params": {k: v for k, v in est.get_params().items() if _is_json(v)},
        "feature_names": [str(c) for c in est.feature_names_in_],
        "classes": [str(c) for c in est.classes_],
        "best_params": {k: v for k, v in getattr(est, "best_params_", {}).items() if _is_json(v)},
        "versions": _versions(),
        "train_table_sha256": None if train_table is None else table_sha256(train_table),
        "train_table_shape": None if train_table is None else list(train_table.shape),
    }
    atomic.write_json(directory / SIDECAR_FILE, sidecar)
    logger.info("saved %s to %s", type(est).__name__, directory)
    return directory


def _is_json(value) -> bool:
    try:
        json.dumps(value)
    except TypeError:
        return False
    return True


def load_model(directory: str | Path, expect_columns=None):
    """Load a model written by :func:`save_model`.

    Parameters
    ----------
    directory : str or Path
        Directory holding ``model.joblib`` and ``model.json``.
    expect_columns : sequence of str or pandas.DataFrame, optional
        Columns of the table the model will be applied to (``Metadata_*`` ignored).

    Raises
    ------
    FeatureMismatchError
        When ``expect_columns`` lacks model features or has features the model does not know.
    FileNotFoundError
        When either file is missing.
    """
    directory = Path(directory)
    for name in (MODEL_FILE, SIDECAR_FILE):
        if not (directory / name).is_file():
            raise FileNotFoundError(f"{directory / name} not found; expected a save_model directory")
    sidecar = json.loads((directory / SIDECAR_FILE).read_text())
    if expect_columns is not None:
        if isinstance(expect_columns, pd.DataFrame):
            expect_columns = expect_columns.columns
        columns = [str(c) for c in expect_columns]
        have = feature_columns(pd.DataFrame(columns=columns))
        want = sidecar["feature_names"]
        missing = [c for c in want if c not in set(have)]
        extra = [c for c in have if c not in set(want)]
        if missing or extra:
            raise FeatureMismatchError(missing, extra, where=f"table for model {directory}")
    now = _versions()
    stale = {k: (v, now.get(k)) for k, v in sidecar["versions"].items() if now.get(k) != v}
    if stale:
        logger.warning("model %s was saved with other package versions (saved, now): %s", directory, stale)
    return joblib.load(directory / MODEL_FILE)

