"""Table transformers: cleaning, pycytominer-style feature selection, scaling.

Each transformer takes a DataFrame (feature columns plus ``Metadata_*`` columns, which pass
through untouched) so that per-plate scaling can read ``Metadata_group`` inside a ``Pipeline``.
The scaler is the last table step and returns a plain ``(n_rows, n_features)`` float array.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_selection import mutual_info_classif
from sklearn.utils.validation import check_is_fitted

from cellcompare.classical.errors import (
    EmptyFeatureTableError,
    FeatureMismatchError,
    MissingMetadataError,
)
from cellcompare.classical.tables import GROUP_COLUMN, METADATA_PREFIX, feature_columns

logger = logging.getLogger(__name__)

MAD_TO_SD = 1.4826  # MAD of a normal distribution times this equals its standard deviation
#: Values of ``normalize=``.
NORMALIZE_METHODS = ("standard", "plate_robust", "controls", "controls_robust")
PLATE_COLUMN = "Metadata_Plate"
WELL_TYPE_COLUMN = "Metadata_WellType"
NEGATIVE_CONTROL = "negative_control"
#: Fewest negative-control rows a plate needs to be normalised by its controls.
MIN_CONTROLS = 2


class NoControlsError(MissingMetadataError):
    """A plate to normalise by its negative controls has fewer than two control rows."""


def location_scale(values: np.ndarray, robust: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per-column centre and scale of ``values`` ``(n_rows, n_features)``.

    ``robust=False``: mean and standard deviation (``ddof=0``, as scikit-learn's and
    pycytominer's ``standardize``); ``robust=True``: median and MAD times 1.4826 (pycytominer's
    ``mad_robustize``).
    """
    if not robust:
        return values.mean(axis=0), values.std(axis=0)
    median = np.median(values, axis=0)
    return median, MAD_TO_SD * np.median(np.abs(values - median), axis=0)


def control_statistics(values: np.ndarray, plates: np.ndarray, is_control: np.ndarray, *,
                       robust: bool = False) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Centre and scale of each plate's negative-control rows.

    Parameters
    ----------
    values : np.ndarray
        ``(n_rows, n_features)`` feature values.
    plates : np.ndarray
        ``(n_rows,)`` plate of each row.
    is_control : np.ndarray
        ``(n_rows,)`` bool, True for negative-control rows.
    robust : bool
        Median / MAD instead of mean / standard deviation.

    Returns
    -------
    dict
        ``{plate: (centre, scale)}`` for every plate in ``plates``.

    Raises
    ------
    NoControlsError
        A plate has fewer than two control rows.
    """
    stats = {}
    for plate in np.unique(plates):
        rows = (plates == plate) & is_control
        if rows.sum() < MIN_CONTROLS:
            raise NoControlsError(
                f"plate {plate!r} has {int(rows.sum())} negative-control rows "
                f"({WELL_TYPE_COLUMN} == {NEGATIVE_CONTROL!r}); normalize='controls' needs at least "
                f"{MIN_CONTROLS} per plate (keep the control wells in the dataset, or use "
                f"normalize='plate_robust')")
        stats[str(plate)] = location_scale(values[rows], robust)
    return stats


def _metadata(X: pd.DataFrame) -> pd.DataFrame:
    return X[[c for c in X.columns if str(c).startswith(METADATA_PREFIX)]]


def _values(X: pd.DataFrame, cols: list[str], where: str) -> np.ndarray:
    missing = [c for c in cols if c not in X.columns]
    if missing:
        extra = sorted(set(feature_columns(X)) - set(cols))
        raise FeatureMismatchError(missing, extra, where=where)
    return X[cols].to_numpy(dtype=np.float64, na_value=np.nan)


def _frame(values: np.ndarray, cols: list[str], X: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame(values, columns=cols, index=X.index)
    return pd.concat([out, _metadata(X)], axis=1)


class TableCleaner(TransformerMixin, BaseEstimator):
    """Drop all-NaN and constant columns, clip infinities, impute NaN with training medians.

    Every action is logged and counted in ``report_`` (never silent).

    Attributes
    ----------
    columns_ : list of str
        Feature columns kept.
    report_ : dict
        ``n_input``, ``n_all_nan``, ``n_constant``, ``n_kept``, ``n_inf_clipped``, ``n_imputed``
        (cell counts on the training rows) and the dropped column names.
    """

    def fit(self, X: pd.DataFrame, y=None) -> TableCleaner:
        cols = feature_columns(X)
        values = _values(X, cols, "training table")
        finite = np.where(np.isfinite(values), values, np.nan)
        all_nan = np.isnan(finite).all(axis=0)
        filled = np.where(all_nan, 0.0, finite)  # avoids all-NaN warnings; dropped below
        lo, hi = np.nanmin(filled, axis=0), np.nanmax(filled, axis=0)
        constant = ~all_nan & (lo == hi)
        keep = ~all_nan & ~constant
        if not keep.any():
            raise EmptyFeatureTableError(
                f"training table: all {len(cols)} feature columns are NaN ({int(all_nan.sum())}) "
                f"or constant ({int(constant.sum())}); nothing left to learn from"
            )
        self.columns_ = [c for c, k in zip(cols, keep) if k]
        self.low_, self.high_ = lo[keep], hi[keep]
        kept = values[:, keep]
        self.medians_ = np.nanmedian(np.where(np.isfinite(kept), kept, np.nan), axis=0)
        self.report_ = {
            "n_input": len(cols), "n_all_nan": int(all_nan.sum()), "n_constant": int(constant.sum()),
            "n_kept": int(keep.sum()), "n_inf_clipped": int(np.isinf(kept).sum()),
            "n_imputed": int(np.isnan(kept).sum()),
            "dropped_all_nan": [c for c, d in zip(cols, all_nan) if d],
            "dropped_constant": [c for c, d in zip(cols, constant) if d],
        }
        r = self.report_
        logger.info("cleaning: %d features in, dropped %d all-NaN and %d constant, kept %d; "
                    "clipped %d inf and imputed %d NaN values (training rows)", r["n_input"],
                    r["n_all_nan"], r["n_constant"], r["n_kept"], r["n_inf_clipped"], r["n_imputed"])
        return self

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        check_is_fitted(self, "columns_")
        values = _values(X, self.columns_, "table")
        n_inf, n_nan = int(np.isinf(values).sum()), int(np.isnan(values).sum())
        if n_inf or n_nan:
            logger.info("cleaning: clipped %d inf and imputed %d NaN values in %d rows",
                        n_inf, n_nan, len(values))
        values = np.where(np.isposinf(values), self.high_, values)  # inf -> training max
        values = np.where(np.isneginf(values), self.low_, values)
        values = np.where(np.isnan(values), self.medians_, values)
        return _frame(values, self.columns_, X)


class FeatureSelector(TransformerMixin, BaseEstimator):
    """Feature selection in the pycytominer spirit, fitted on training rows only.

    Parameters
    ----------
    variance_threshold : float
        Drop features whose training variance is at most this value.
    corr_threshold : float or None
        Greedy correlation filter: walking the columns in order, drop a feature whose absolute
        Pearson correlation with an already kept feature exceeds this value.
    mi_top_k : int or None
        Keep only the ``k`` features with the highest mutual information with the labels.
    max_rows : int
        Rows subsampled (seeded) to estimate correlations and mutual information.
    random_state : int or None
        Seed of the subsample and of the mutual-information estimator.
    """

    def __init__(self, variance_threshold: float = 0.0, corr_threshold: float | None = 0.9,
                 mi_top_k: int | None = None, max_rows: int = 20000, random_state: int | None = 0):
        self.variance_threshold = variance_threshold
        self.corr_threshold = corr_threshold
        self.mi_top_k = mi_top_k
        self.max_rows = max_rows
        self.random_state = random_state

    def fit(self, X: pd.DataFrame, y=None) -> FeatureSelector:
        cols = feature_columns(X)
        values = _values(X, cols, "training table")
        rng = np.random.default_rng(self.random_state)
        rows = np.arange(len(values))
        if len(rows) > self.max_rows:
            rows = np.sort(rng.choice(rows, self.max_rows, replace=False))
        keep = np.nanvar(values, axis=0) > self.variance_threshold
        n_var = int((~keep).sum())
        if self.corr_threshold is not None and keep.sum() > 1:
            keep = self._correlation_filter(values[rows], keep)
        n_corr = len(cols) - n_var - int(keep.sum())
        if self.mi_top_k is not None and y is not None and keep.sum() > self.mi_top_k:
            idx = np.flatnonzero(keep)
            mi = mutual_info_classif(values[np.ix_(rows, idx)], np.asarray(y)[rows],
                                     random_state=self.random_state)
            keep = np.zeros_like(keep)
            keep[idx[np.argsort(-mi, kind="stable")[: self.mi_top_k]]] = True
        if not keep.any():
            raise EmptyFeatureTableError(f"feature selection removed all {len(cols)} features")
        self.columns_ = [c for c, k in zip(cols, keep) if k]
        self.report_ = {"n_input": len(cols), "n_low_variance": n_var, "n_correlated": n_corr,
                        "n_kept": len(self.columns_)}
        logger.info("selection: %d features in, dropped %d low-variance and %d correlated, kept %d",
                    len(cols), n_var, n_corr, len(self.columns_))
        return self

    def _correlation_filter(self, values: np.ndarray, keep: np.ndarray) -> np.ndarray:
        idx = np.flatnonzero(keep)
        with np.errstate(all="ignore"):
            corr = np.abs(np.nan_to_num(np.corrcoef(values[:, idx], rowvar=False)))
        kept: list[int] = []
        for j in range(len(idx)):
            if not kept or corr[j, kept].max() <= self.corr_threshold:
                kept.append(j)
        out = np.zeros_like(keep)
        out[idx[kept]] = True
        return out

    def transform(self, X: pd.DataFrame) -> pd.DataFrame:
        check_is_fitted(self, "columns_")
        return _frame(_values(X, self.columns_, "table"), self.columns_, X)


class TableScaler(TransformerMixin, BaseEstimator):
    """Standard scaling, per-plate robust scaling, or per-plate scaling by negative controls.

    Parameters
    ----------
    method : {"standard", "plate_robust", "controls", "controls_robust"}
        ``plate_robust`` subtracts each plate's (``Metadata_group``) median and divides by its
        MAD (times 1.4826). ``controls`` standardises each plate (``Metadata_Plate``, else
        ``Metadata_group``) by the mean and standard deviation of its negative-control rows
        (``Metadata_WellType == "negative_control"``), the Cell Painting practice against plate
        effects (pycytominer ``normalize(samples=...)`` per plate); ``controls_robust`` uses
        their median and MAD.
    unseen_groups : {"self", "global"}
        For a plate absent from training (the usual case with plate-grouped folds): ``self``
        normalises it by its own rows' median/MAD (``controls*``: by its own control rows;
        features and well types only, never labels); ``global`` uses the pooled training
        statistics (``controls*``: of all training control rows).
    eps : float
        Floor on the scale so constant features do not divide by zero.

    Attributes
    ----------
    center_, scale_ : np.ndarray
        Statistics of every training row (``controls*``: every training control row): what
        ``standard`` scales by, and an unseen plate with ``unseen_groups="global"``.
    group_stats_ : dict
        ``{plate: (centre, scale)}`` of each training plate (not for ``standard``), stored
        with the model: a served image of a training plate is normalised by them, and one
        without a plate by each of them in turn
        (:meth:`TableClassifier.predict_reference_proba`).

    Returns (transform)
    -------------------
    ndarray of shape (n_rows, n_features)

    Examples
    --------
    >>> import pandas as pd
    >>> train = pd.DataFrame({"f": [1.0, 2.0, 3.0, 11.0, 12.0, 13.0],
    ...                       "Metadata_group": ["a", "a", "a", "b", "b", "b"]})
    >>> scaler = TableScaler("plate_robust").fit(train)
    >>> new = pd.DataFrame({"f": [12.0, 3.0, 5.0], "Metadata_group": ["b", "c", "c"]})
    >>> scaler.transform(new).round(3).ravel().tolist()  # plate b's statistics; c's own
    [0.0, -0.674, 0.674]
    """

    def __init__(self, method: str = "standard", unseen_groups: str = "self", eps: float = 1e-6):
        self.method = method
        self.unseen_groups = unseen_groups
        self.eps = eps

    def fit(self, X: pd.DataFrame, y=None) -> TableScaler:
        if self.method not in NORMALIZE_METHODS:
            raise ValueError(f"normalize must be one of {list(NORMALIZE_METHODS)}, found {self.method!r}")
        self.columns_ = feature_columns(X)
        values = _values(X, self.columns_, "training table")
        if self.method == "standard":
            self.center_, self.scale_ = values.mean(axis=0), values.std(axis=0)
            return self
        if self.method.startswith("controls"):
            plates, controls = self._plates(X), self._controls(X)
            robust = self.method == "controls_robust"
            self.group_stats_ = control_statistics(values, plates, controls, robust=robust)
            self.center_, self.scale_ = location_scale(values[controls], robust)
            return self
        groups = self._groups(X)
        self.center_, self.scale_ = self._robust(values)
        self.group_stats_ = {g: self._robust(values[groups == g]) for g in np.unique(groups)}
        return self

    def _groups(self, X: pd.DataFrame) -> np.ndarray:
        if GROUP_COLUMN not in X.columns:
            raise MissingMetadataError(
                f"normalize='plate_robust' needs a '{GROUP_COLUMN}' column; table has "
                f"{[c for c in X.columns if str(c).startswith(METADATA_PREFIX)]}"
            )
        return X[GROUP_COLUMN].astype(str).to_numpy()

    def _plates(self, X: pd.DataFrame) -> np.ndarray:
        if PLATE_COLUMN in X.columns and X[PLATE_COLUMN].notna().all():
            return X[PLATE_COLUMN].astype(str).to_numpy()
        return self._groups(X)

    def plate_column(self, X: pd.DataFrame) -> str | None:
        """The column whose value is the plate a row is normalised by (``None`` for standard).

        ``Metadata_group`` for ``plate_robust``; for ``controls*``, ``Metadata_Plate`` when
        every row has one, else ``Metadata_group``.
        """
        if self.method == "standard":
            return None
        if self.method.startswith("controls") and PLATE_COLUMN in X.columns \
                and X[PLATE_COLUMN].notna().all():
            return PLATE_COLUMN
        return GROUP_COLUMN

    def plate_keys(self, X: pd.DataFrame) -> np.ndarray:
        """Per row, the plate :meth:`transform` normalises it by: object array, ``None`` for none.

        A row whose plate value is missing (a lone served image) gets the reference statistics
        (``center_``, ``scale_``); ``standard`` scaling gives every row ``None``. A table without
        the column is an error (:class:`MissingMetadataError`), as in :meth:`fit`.
        """
        column = self.plate_column(X)
        if column is None:
            return np.full(len(X), None, dtype=object)
        if column not in X.columns:
            self._groups(X)  # raises MissingMetadataError naming the column
        values = X[column]
        return np.where(values.isna().to_numpy(), None, values.astype(str).to_numpy()).astype(object)

    def _controls(self, X: pd.DataFrame) -> np.ndarray:
        if WELL_TYPE_COLUMN not in X.columns:
            raise MissingMetadataError(
                f"normalize={self.method!r} needs a '{WELL_TYPE_COLUMN}' column marking the "
                f"negative controls; table has "
                f"{[c for c in X.columns if str(c).startswith(METADATA_PREFIX)]}")
        return (X[WELL_TYPE_COLUMN].astype(str) == NEGATIVE_CONTROL).to_numpy()

    def _robust(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return location_scale(values, robust=True)

    def transform(self, X: pd.DataFrame) -> np.ndarray:
        check_is_fitted(self, "center_")
        values = _values(X, self.columns_, "table")
        if self.method == "standard":
            return (values - self.center_) / np.maximum(self.scale_, self.eps)
        by_controls = self.method.startswith("controls")
        keys = self.plate_keys(X)
        lone = np.array([k is None for k in keys], dtype=bool)
        if lone.any():  # its statistics would be NaN: the model would answer with its prior
            raise MissingMetadataError(
                f"{int(lone.sum())} of {len(X)} rows have no plate ('{self.plate_column(X)}' is "
                f"missing) to normalise by (normalize={self.method!r}); give each row its plate, "
                "or predict them with TableClassifier.predict_reference_proba")
        groups = keys.astype(str)
        controls = self._controls(X) if by_controls else None
        out = np.empty_like(values)
        for g in np.unique(groups):
            rows = groups == g
            if g in self.group_stats_:
                center, scale = self.group_stats_[g]
            elif self.unseen_groups == "self" and by_controls:
                center, scale = control_statistics(values[rows], groups[rows], controls[rows],
                                                   robust=self.method == "controls_robust")[g]
            elif self.unseen_groups == "self":
                center, scale = self._robust(values[rows])
            else:
                center, scale = self.center_, self.scale_
            out[rows] = (values[rows] - center) / np.maximum(scale, self.eps)
        return out
