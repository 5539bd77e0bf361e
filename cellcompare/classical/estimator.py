"""``TableClassifier``: cleaning, selection, scaling and an SVM / XGBoost, as one estimator."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import LabelEncoder
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d

from cellcompare.classical.errors import (
    FeatureMismatchError,
    MissingMetadataError,
    NonFiniteFeaturesError,
    TooFewMembersError,
    UnseenLabelError,
)
from cellcompare.classical.models import MODEL_NAMES, SEARCH_SPACES, build_model, final_params
from cellcompare.classical.preprocess import PLATE_COLUMN, FeatureSelector, TableCleaner, TableScaler
from cellcompare.classical.scale import MANY_CLASSES
from cellcompare.classical.tables import (
    GROUP_COLUMN,
    SAMPLE_COLUMN,
    validate_features,
    validate_labels,
)
from cellcompare.classical.tuning import inner_splits, search
from cellcompare.config import UnknownKeyError
from cellcompare.proba import mean_by

logger = logging.getLogger(__name__)


class TableClassifier(ClassifierMixin, BaseEstimator):
    """A scikit-learn classifier on CellProfiler feature tables (see docs/CONTRACTS.md).

    ``X`` is a DataFrame whose ``Metadata_*`` columns are metadata (``Metadata_group`` feeds
    per-plate normalisation, ``Metadata_sample_id`` groups cells into images) and whose other
    columns are numeric features. Labels may be strings; ``classes_`` holds them sorted.

    Parameters
    ----------
    model : {"svm", "linear_svm", "xgboost"}
        Final estimator.
    granularity : {"image", "cell"}
        ``cell`` models are fitted on cell rows and offer :meth:`predict_image_proba`.
    normalize : {"standard", "plate_robust", "controls", "controls_robust"}
        Scaling fitted on training rows (plate_robust: median/MAD per ``Metadata_group``;
        controls / controls_robust: each plate by its negative-control rows, see
        :class:`~cellcompare.classical.preprocess.TableScaler`).
    tune : bool
        Search ``SEARCH_SPACES[model]`` by inner stratified CV within the training rows.
    tune_budget : int
        Most candidates evaluated.
    tune_seconds : float or None
        Wall-clock budget of the search (checked between candidates).
    inner_folds : int
        Folds of the search: grouped by ``fit``'s ``groups`` (the outer folds' grouping), else
        by image for cell models, else stratified over rows.
    variance_threshold, corr_threshold, mi_top_k : float, float or None, int or None
        Feature selection (see :class:`classical.preprocess.FeatureSelector`).
    large_table_rows : int
        Above this many training rows ``svm`` uses a Nystroem approximation instead of exact SVC.
    unseen_groups : {"self", "global"}
        How plate_robust treats plates absent from training.
    device : {"auto", "cpu", "cuda"}
        XGBoost device.
    random_state : int or None
        Seed of every random step.
    n_jobs : int
        Threads of XGBoost.
    model_params : dict or None
        Fixed parameters of the final estimator (e.g. ``{"C": 10}``).
    class_weight : None, "balanced" or dict
        ``{label: weight}`` or ``"balanced"`` (``n / (k * n_label)``) for every final estimator:
        the SVMs' ``class_weight``, XGBoost's sample weights. Labels a mapping leaves out weigh 1.
    """

    def __init__(self, model: str = "svm", granularity: str = "image", normalize: str = "standard",
                 tune: bool = False, tune_budget: int = 8, tune_seconds: float | None = None,
                 inner_folds: int = 3, variance_threshold: float = 0.0,
                 corr_threshold: float | None = 0.9, mi_top_k: int | None = None,
                 large_table_rows: int = 20000, unseen_groups: str = "self", device: str = "auto",
                 random_state: int | None = 0, n_jobs: int = 1, model_params: dict | None = None,
                 class_weight=None):
        self.model = model
        self.granularity = granularity
        self.normalize = normalize
        self.tune = tune
        self.tune_budget = tune_budget
        self.tune_seconds = tune_seconds
        self.inner_folds = inner_folds
        self.variance_threshold = variance_threshold
        self.corr_threshold = corr_threshold
        self.mi_top_k = mi_top_k
        self.large_table_rows = large_table_rows
        self.unseen_groups = unseen_groups
        self.device = device
        self.random_state = random_state
        self.n_jobs = n_jobs
        self.model_params = model_params
        self.class_weight = class_weight

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = True  # TableCleaner imputes NaN and clips inf, by design
        return tags

    def _pipeline(self, n_rows: int) -> Pipeline:
        params = dict(self.model_params or {})
        if self.class_weight is not None:
            params["class_weight"] = self._encoded_class_weight()
        final = build_model(self.model, large=n_rows > self.large_table_rows, n_jobs=self.n_jobs,
                            n_classes=len(self.classes_),
                            random_state=self.random_state, device=self.device, **params)
        return Pipeline([
            ("clean", TableCleaner()),
            ("select", FeatureSelector(self.variance_threshold, self.corr_threshold, self.mi_top_k,
                                       random_state=self.random_state)),
            ("scale", TableScaler(self.normalize, self.unseen_groups)),
            ("model", final),
        ])

    def _encoded_class_weight(self):
        """``class_weight`` keyed by the encoded labels the final estimator sees."""
        if self.class_weight == "balanced":
            return "balanced"
        if not isinstance(self.class_weight, dict):
            raise ValueError(f"class_weight must be 'balanced', a dict {{label: weight}} or None, "
                             f"found {self.class_weight!r}")
        known = {str(c): i for i, c in enumerate(self.classes_)}
        unknown = sorted(set(map(str, self.class_weight)) - set(known))
        if unknown:
            raise UnseenLabelError(f"class_weight names labels {unknown} absent from the training "
                                   f"labels {list(known)}")
        named = {str(k): float(v) for k, v in self.class_weight.items()}
        return {i: named.get(c, 1.0) for c, i in known.items()}

    def _min_members(self, y: np.ndarray) -> int:
        """Training rows per class the final estimator's own splits need (calibration folds,
        the early-stopping split); both split rows."""
        params = self.model_params or {}
        if self.model == "xgboost":
            return 2  # inner validation split
        if self.model == "svm" and len(np.unique(y)) > int(params.get("many_classes", MANY_CLASSES)):
            return 1  # scale.OvRLinearSVM: temperature 1 without a split
        return int(params.get("calibration_folds", 3))  # calibration folds

    def _inner_groups(self, X: pd.DataFrame, groups) -> np.ndarray | None:
        """The groups of the tuning folds, or None where every row is its own group."""
        if groups is None and self.granularity == "cell" and SAMPLE_COLUMN in X.columns:
            groups = X[SAMPLE_COLUMN]  # cells carry their image's label: keep an image together
        if groups is None:
            return None
        groups = np.asarray(groups).astype(str)
        if len(groups) != len(X):
            raise ValueError(f"groups has {len(groups)} entries but the training table {len(X)} rows")
        return None if len(np.unique(groups)) == len(groups) else groups

    def _check_members(self, y: np.ndarray, groups: np.ndarray | None) -> None:
        """Each class has enough members for every split, counted in the unit each splits.

        The calibration folds and early-stopping split divide rows; the tuning folds divide
        ``groups`` when given (an image's cells, a plate), else rows.
        """
        need = self._min_members(y)
        if self.tune and groups is None:
            need = max(need, self.inner_folds)
        validate_labels(y, min_members=need)
        if self.tune and groups is not None:
            units = pd.DataFrame({"g": groups, "y": y}).drop_duplicates()
            counts = units.groupby("y").size()
            small = {str(c): int(n) for c, n in counts.items() if n < self.inner_folds}
            if small:
                raise TooFewMembersError(
                    f"class(es) {small} lie in fewer than {self.inner_folds} groups, which the "
                    f"{self.inner_folds} inner tuning folds grouped like the outer folds need "
                    f"(a group is an image of a cell model, or the folds' group); lower "
                    f"inner_folds, add images, or set tune: false")

    def fit(self, X: pd.DataFrame, y, groups=None) -> "TableClassifier":
        """Fit on training rows ``X`` (DataFrame) with labels ``y``.

        ``groups`` (one per row) groups the tuning folds, as the outer folds were grouped;
        without it a cell model keeps each image's cells together and an image model splits
        rows. Rows that are each their own group are split ungrouped (stratified).
        """
        if self.granularity not in ("image", "cell"):
            raise ValueError(f"granularity must be 'image' or 'cell', found {self.granularity!r}")
        cols = validate_features(X, where="training table")
        if y is None:
            raise ValueError("TableClassifier requires y to be passed, but the target y is None")
        y = column_or_1d(y, warn=True)
        check_classification_targets(y)  # a continuous target is an error, not 1 class per row
        if len(y) != len(X):
            raise ValueError(f"training table has {len(X)} rows but y has {len(y)} labels")
        inner = self._inner_groups(X, groups)
        self._check_members(y, inner)
        self._encoder = LabelEncoder().fit(y)
        self.classes_ = self._encoder.classes_
        self.feature_names_in_ = np.asarray(cols, dtype=object)
        self.n_features_in_ = len(cols)
        encoded = self._encoder.transform(y)
        X = X.reset_index(drop=True)
        pipeline = self._pipeline(len(X))
        space = SEARCH_SPACES[self.model]
        results: list[dict] = []
        if self.tune:
            splits = inner_splits(encoded, inner, self.inner_folds, self.random_state)
            best, results = search(pipeline, X, encoded, space=space, n_candidates=self.tune_budget,
                                   seconds=self.tune_seconds, splits=splits,
                                   random_state=self.random_state)
            pipeline.set_params(**{f"model__{k}": v for k, v in best.items()})
        model_params = pipeline.named_steps["model"].get_params()
        self.best_params_ = {k: model_params[k] for k in space if k in model_params}
        self.pipeline_ = pipeline.fit(X, encoded)
        self.report_ = {
            "cleaning": self.pipeline_.named_steps["clean"].report_,
            "selection": self.pipeline_.named_steps["select"].report_,
            "tuning": results, "best_params": self.best_params_, "n_train_rows": len(X),
            "final_estimator": type(self.pipeline_.named_steps["model"]).__name__,
        }
        logger.info("%s fitted on %d rows x %d features; params %s", self.model, len(X), len(cols),
                    self.best_params_)
        return self

    def _check_table(self, X: pd.DataFrame) -> None:
        check_is_fitted(self, "pipeline_")
        cols = validate_features(X, where="prediction table")
        expected = set(self.feature_names_in_)
        missing = [c for c in self.feature_names_in_ if c not in set(cols)]
        extra = [c for c in cols if c not in expected]
        if missing or extra:
            raise FeatureMismatchError(missing, extra, where="prediction table")

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Return ``(n_rows, n_classes)`` probabilities in ``classes_`` order.

        Raises
        ------
        NonFiniteFeaturesError
            The normalised features hold NaN or infinite values (e.g. statistics of an empty
            plate): the model would answer with its prior, so nothing is predicted.
        """
        self._check_table(X)
        X = X.reset_index(drop=True)
        features = self.pipeline_[:-1].transform(X)  # what pipeline_.predict_proba computes
        bad = ~np.isfinite(features)
        if bad.any():
            rows = np.flatnonzero(bad.any(axis=1))
            names = (X[SAMPLE_COLUMN].iloc[rows].astype(str).unique().tolist()
                     if SAMPLE_COLUMN in X.columns else rows.tolist())
            raise NonFiniteFeaturesError(
                f"{len(rows)} of {len(X)} rows ({names[:5]}) have NaN or infinite values in "
                f"{int(bad.any(axis=0).sum())} of {features.shape[1]} normalised features "
                f"(normalize={self.normalize!r}); nothing predicted")
        return self.pipeline_[-1].predict_proba(features)

    def reference_plates(self) -> list[str]:
        """The training plates whose normalisation statistics the model stored (sorted; none
        for ``normalize="standard"``)."""
        check_is_fitted(self, "pipeline_")
        return sorted(map(str, getattr(self.pipeline_.named_steps["scale"], "group_stats_", {})))

    def predict_reference_proba(self, X: pd.DataFrame) -> np.ndarray:
        """Probabilities of rows without a plate of their own (a lone image, an unknown plate).

        A plate-normalised model cannot scale such a row by its plate's statistics. It is
        scaled by each training plate's stored statistics in turn and the probabilities are
        averaged: the unknown plate effect is marginalised over those seen in training (on the
        demo's unseen plates this beats one pooled median/MAD, see benchmarks/RESULTS.md).
        ``standard`` scaling needs no plate: :meth:`predict_proba`.

        Returns
        -------
        ndarray of shape (n_rows, n_classes)
        """
        plates = self.reference_plates()
        if not plates:
            return self.predict_proba(X)
        unplated = X.drop(columns=[PLATE_COLUMN], errors="ignore")  # the plate is Metadata_group
        return np.mean([self.predict_proba(unplated.assign(**{GROUP_COLUMN: plate}))
                        for plate in plates], axis=0)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        """Return the most probable label of each row."""
        proba = self.predict_proba(X)  # first, so an unfitted model raises NotFittedError
        return self.classes_[np.argmax(proba, axis=1)]

    def predict_image_proba(self, X_cells: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Average the cells' probabilities per ``Metadata_sample_id``.

        Returns
        -------
        sample_ids : ndarray of str, shape (n_images,)
            Sorted image ids.
        proba : ndarray, shape (n_images, n_classes)
            Mean cell probability per image, in ``classes_`` order.
        """
        if SAMPLE_COLUMN not in X_cells.columns:
            raise MissingMetadataError(
                f"predict_image_proba needs a '{SAMPLE_COLUMN}' column in the cell table")
        return mean_by(X_cells[SAMPLE_COLUMN].astype(str).to_numpy(), self.predict_proba(X_cells))

    def check_labels(self, y) -> np.ndarray:
        """Return ``y`` as an array, raising :class:`UnseenLabelError` for labels not in ``classes_``."""
        check_is_fitted(self, "classes_")
        y = np.asarray(y)
        unseen = sorted(set(map(str, np.unique(y))) - set(map(str, self.classes_)))
        if unseen:
            raise UnseenLabelError(
                f"labels {unseen} were not seen while fitting; model classes are {list(self.classes_)}")
        return y

    def score(self, X: pd.DataFrame, y, sample_weight=None) -> float:
        """Accuracy on ``X``; labels unseen while fitting raise :class:`UnseenLabelError`."""
        y = self.check_labels(y)
        return float(np.average(self.predict(X) == y, weights=sample_weight))


def check_params(name: str, params: dict, *, where: str = "params",
                 source: str | Path | None = None) -> None:
    """Raise :class:`~cellcompare.config.UnknownKeyError` for a key :func:`make_classifier` cannot use.

    A key must name a :class:`TableClassifier` parameter or one of the final estimator's
    (``classical.models.final_params``); so must each key of ``model_params``. Checked when a
    configuration is read, so that a typo stops a run before any work, not at the first fit.

    Parameters
    ----------
    name : {"svm", "linear_svm", "xgboost"}
        The classifier.
    params : dict
        Keyword arguments of :func:`make_classifier`.
    where : str
        Dotted position of ``params`` in the configuration (``models[1].params``).
    source : str or Path, optional
        The configuration file, for the message.

    Examples
    --------
    >>> from cellcompare.classical.estimator import check_params
    >>> check_params("xgboost", {"max_depth": 4, "normalize": "plate_robust"})
    >>> check_params("xgboost", {"max_dept": 4}, where="models[1].params", source="run.yaml")
    Traceback (most recent call last):
    ...
    cellcompare.config.UnknownKeyError: run.yaml: unknown key 'models[1].params.max_dept'; ...
    """
    final = final_params(name)
    table = set(TableClassifier().get_params()) - {"model", "granularity"}
    for key in params:
        if key not in table | final:
            raise UnknownKeyError(f"{where}.{key}", sorted(table | final), source)
    nested = params.get("model_params") or {}
    for key in nested:
        if key not in final:
            raise UnknownKeyError(f"{where}.model_params.{key}", sorted(final), source)


def make_classifier(name: str, granularity: str = "image", normalize: str = "standard",
                    tune: bool = False, tune_budget: int = 8, random_state: int | None = 0,
                    n_jobs: int = 1, **params) -> TableClassifier:
    """Build a :class:`TableClassifier` for ``name`` in ``{"svm", "linear_svm", "xgboost"}``.

    Keyword arguments naming a ``TableClassifier`` parameter (``tune_seconds``, ``mi_top_k``,
    ``device``...) set it; any other goes to the final estimator (``C=10``, ``max_depth=4``).

    Examples
    --------
    >>> from cellcompare.classical import make_classifier
    >>> est = make_classifier("xgboost", normalize="plate_robust", max_depth=4)
    >>> est.model_params
    {'max_depth': 4}
    """
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown classifier {name!r}; expected one of {MODEL_NAMES}")
    own = set(TableClassifier().get_params())
    table_params = {k: v for k, v in params.items() if k in own}
    model_params = {k: v for k, v in params.items() if k not in own}
    model_params.update(table_params.pop("model_params", None) or {})
    return TableClassifier(model=name, granularity=granularity, normalize=normalize, tune=tune,
                           tune_budget=tune_budget, random_state=random_state, n_jobs=n_jobs,
                           model_params=model_params or None, **table_params)
