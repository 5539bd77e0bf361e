"""The final estimators: calibrated SVMs and an early-stopping XGBoost, plus their search spaces."""

from __future__ import annotations

import logging
import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.calibration import CalibratedClassifierCV
from sklearn.kernel_approximation import Nystroem
from sklearn.model_selection import StratifiedKFold, StratifiedShuffleSplit
from sklearn.pipeline import make_pipeline
from sklearn.svm import SVC, LinearSVC
from sklearn.utils.validation import check_is_fitted

from cellcompare.classical.scale import MANY_CLASSES, OvRLinearSVM, bounded_xgb_params

logger = logging.getLogger(__name__)

MODEL_NAMES = ("svm", "linear_svm", "xgboost")

# Candidate values for the inner search; sampled without replacement up to the budget.
SEARCH_SPACES: dict[str, dict[str, list]] = {
    "svm": {"C": [0.1, 1.0, 10.0, 100.0], "gamma": ["scale", 0.001, 0.01, 0.1]},
    "linear_svm": {"C": [0.001, 0.01, 0.1, 1.0, 10.0]},
    "xgboost": {"max_depth": [3, 4, 6, 8], "learning_rate": [0.03, 0.1, 0.3],
                "n_estimators": [100, 300, 600]},
}


def cuda_available() -> bool:
    """Return whether torch reports a CUDA device (False when torch is absent)."""
    try:
        import torch
    except ImportError:  # third-party and optional for classical models
        logger.info("torch is not installed; classical models cannot detect CUDA and run on the CPU")
        return False
    return bool(torch.cuda.is_available())


class CalibratedSVM(ClassifierMixin, BaseEstimator):
    """An SVM whose probabilities come from ``CalibratedClassifierCV`` (Platt / sigmoid).

    ``CalibratedClassifierCV`` is used instead of ``SVC(probability=True)`` because the latter
    runs its own hidden 5-fold Platt scaling whose probabilities can disagree with
    ``predict``; with explicit calibration folds the argmax of ``predict_proba`` is the
    prediction, the folds are seeded, and the same code path serves the RBF and linear SVMs.

    Parameters
    ----------
    kernel : {"rbf", "linear", "nystroem"}
        ``rbf`` is an exact ``SVC``; ``linear`` a ``LinearSVC`` (large tables); ``nystroem`` an
        RBF kernel approximation (``n_components`` landmarks) feeding a ``LinearSVC``.
    C, gamma : float, float or "scale"
        Usual SVM parameters (``gamma`` ignored by ``linear``).
    calibration_folds : int
        Stratified folds of the calibration.
    n_components : int
        Landmarks of the Nystroem approximation.
    random_state : int or None
        Seed of the calibration folds and the Nystroem landmarks.
    class_weight : None, "balanced" or dict
        Keys are the labels ``fit`` receives. Turned into per-row sample weights for the SVM and
        for its calibration, so a minority class's errors cost more and the calibrated
        probabilities are those of the weighted (for ``balanced``: equal) class prior; an SVM
        whose weights would only move the margin is pulled back to the majority by Platt scaling.
    """

    def __init__(self, kernel: str = "rbf", C: float = 1.0, gamma="scale", calibration_folds: int = 3,
                 n_components: int = 500, max_iter: int = 2000, random_state: int | None = 0,
                 class_weight=None):
        self.kernel = kernel
        self.C = C
        self.gamma = gamma
        self.calibration_folds = calibration_folds
        self.n_components = n_components
        self.max_iter = max_iter
        self.random_state = random_state
        self.class_weight = class_weight

    def _base(self, n_features: int):
        if self.kernel == "rbf":
            return SVC(kernel="rbf", C=self.C, gamma=self.gamma, random_state=self.random_state)
        linear = LinearSVC(C=self.C, dual="auto", max_iter=self.max_iter, random_state=self.random_state)
        if self.kernel == "linear":
            return linear
        # a Pipeline takes no sample_weight in fit: the LinearSVC gets the class weights itself
        linear.set_params(class_weight=self.class_weight)
        gamma = 1.0 / n_features if self.gamma == "scale" else self.gamma  # inputs are scaled
        return make_pipeline(Nystroem(gamma=gamma, n_components=self.n_components,
                                      random_state=self.random_state), linear)

    def fit(self, X: np.ndarray, y: np.ndarray) -> "CalibratedSVM":
        cv = StratifiedKFold(self.calibration_folds, shuffle=True, random_state=self.random_state)
        self.calibrated_ = CalibratedClassifierCV(self._base(X.shape[1]), method="sigmoid", cv=cv)
        weights = {}
        if self.class_weight is not None:
            from sklearn.utils.class_weight import compute_sample_weight

            weights["sample_weight"] = compute_sample_weight(self.class_weight, y)
        with warnings.catch_warnings():
            # the Nystroem pipeline uses the weights for calibration only (its SVC has class_weight)
            warnings.filterwarnings("ignore", message=".*does not support sample_weight.*")
            self.calibrated_.fit(X, y, **weights)
        self.classes_ = self.calibrated_.classes_
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "calibrated_")
        return self.calibrated_.predict_proba(X)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]


class EarlyStoppingXGB(ClassifierMixin, BaseEstimator):
    """``xgboost.XGBClassifier`` (hist, multi:softprob) with early stopping on an inner split.

    Parameters
    ----------
    n_estimators, max_depth, learning_rate : int, int, float
        Boosting parameters; ``n_estimators`` is the ceiling early stopping may cut short.
    early_stopping_rounds : int
        Rounds without improvement of the validation log-loss before stopping.
    validation_fraction : float
        Share of the training rows (stratified) held out to decide when to stop.
    device : {"auto", "cpu", "cuda"}
        ``auto`` picks ``cuda`` when torch reports a CUDA device.
    subsample, colsample_bytree, max_bin : float, float, int
        Row / column subsampling and histogram bins (fewer bins and columns: faster on wide tables).
    n_jobs, random_state : int
        Threads and seed.
    class_weight : None, "balanced" or dict
        Turned into per-row sample weights (``sklearn.utils.class_weight.compute_sample_weight``)
        of the training rows and of the early-stopping rows.
    """

    def __init__(self, n_estimators: int = 300, max_depth: int = 6, learning_rate: float = 0.1,
                 early_stopping_rounds: int = 20, validation_fraction: float = 0.15,
                 subsample: float = 1.0, colsample_bytree: float = 1.0, max_bin: int = 256,
                 device: str = "auto",
                 n_jobs: int = 1, random_state: int | None = 0, class_weight=None):
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.early_stopping_rounds = early_stopping_rounds
        self.validation_fraction = validation_fraction
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.max_bin = max_bin
        self.device = device
        self.n_jobs = n_jobs
        self.random_state = random_state
        self.class_weight = class_weight

    def fit(self, X: np.ndarray, y: np.ndarray) -> "EarlyStoppingXGB":
        from sklearn.utils.class_weight import compute_sample_weight
        from xgboost import XGBClassifier

        self.classes_ = np.unique(y)
        self.device_ = ("cuda" if cuda_available() else "cpu") if self.device == "auto" else self.device
        n_val = max(int(round(self.validation_fraction * len(y))), len(self.classes_))  # >= 1 per class
        split = StratifiedShuffleSplit(1, test_size=n_val, random_state=self.random_state)
        train, val = next(split.split(X, y))
        # multi:softprob needs num_class >= 3 in xgboost; two classes are the binary objective
        binary = len(self.classes_) == 2
        self.booster_ = XGBClassifier(
            tree_method="hist", objective="binary:logistic" if binary else "multi:softprob",
            device=self.device_,
            n_estimators=self.n_estimators, max_depth=self.max_depth,
            learning_rate=self.learning_rate, subsample=self.subsample,
            colsample_bytree=self.colsample_bytree, max_bin=self.max_bin,
            early_stopping_rounds=self.early_stopping_rounds,
            eval_metric="logloss" if binary else "mlogloss", n_jobs=self.n_jobs, random_state=self.random_state or 0,
        )
        weights = {}
        if self.class_weight is not None:
            weights = {"sample_weight": compute_sample_weight(self.class_weight, y[train]),
                       "sample_weight_eval_set": [compute_sample_weight(self.class_weight, y[val])]}
        self.booster_.fit(X[train], y[train], eval_set=[(X[val], y[val])], verbose=False, **weights)
        self.best_iteration_ = int(self.booster_.best_iteration)
        logger.info("xgboost on %s: stopped at iteration %d of %d", self.device_,
                    self.best_iteration_ + 1, self.n_estimators)
        return self

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        check_is_fitted(self, "booster_")
        return self.booster_.predict_proba(X)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def gain(self, n_features: int) -> np.ndarray:
        """Return the total gain per input column (zeros for columns never split on)."""
        scores = self.booster_.get_booster().get_score(importance_type="total_gain")
        out = np.zeros(n_features)
        for key, value in scores.items():
            out[int(key[1:])] = value  # keys are "f{index}" for array inputs
        return out


def final_params(name: str) -> frozenset[str]:
    """The parameters :func:`build_model` passes on to ``name``'s final estimator.

    ``many_classes`` (read by :func:`build_model` itself) and ``calibration_folds`` included;
    ``kernel``, ``device``, ``n_jobs`` and ``random_state``, which :func:`build_model` sets,
    excluded. ``svm`` takes the parameters of both of its estimators (``CalibratedSVM``, and
    ``OvRLinearSVM`` above ``many_classes``): the class count is known only once the data are.

    Examples
    --------
    >>> from cellcompare.classical.models import final_params
    >>> sorted(final_params("xgboost"))[:4]
    ['calibration_folds', 'class_weight', 'colsample_bytree', 'early_stopping_rounds']
    >>> "max_dept" in final_params("xgboost"), "tol" in final_params("svm")
    (False, True)
    """
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown classifier {name!r}; expected one of {MODEL_NAMES}")
    estimators = {"xgboost": (EarlyStoppingXGB,), "linear_svm": (CalibratedSVM,),
                  "svm": (CalibratedSVM, OvRLinearSVM)}[name]
    names = {key for est in estimators for key in est().get_params()}
    return frozenset((names | {"many_classes", "calibration_folds"})
                     - {"kernel", "device", "n_jobs", "random_state"})


def build_model(name: str, *, large: bool, n_jobs: int, random_state: int | None,
                device: str = "auto", calibration_folds: int = 3, n_classes: int = 0,
                **params) -> BaseEstimator:
    """Return the unfitted final estimator for ``name`` (``svm`` switches to Nystroem when ``large``).

    Above ``many_classes`` classes (a param, default ``scale.MANY_CLASSES``) ``svm`` is
    ``scale.OvRLinearSVM`` and XGBoost's rounds and histograms are bounded
    (``scale.bounded_xgb_params``); both are logged.
    """
    many = int(params.pop("many_classes", MANY_CLASSES))
    if name == "xgboost":
        params, note = bounded_xgb_params(n_classes, params, many_classes=many)
        if note:
            logger.warning(note)
        return EarlyStoppingXGB(device=device, n_jobs=n_jobs, random_state=random_state, **params)
    if name == "svm" and n_classes > many:
        logger.warning("svm: %d classes (> %d) would be %d one-vs-one RBF problems; using one-vs-rest "
                       "linear SVMs (classical.scale.OvRLinearSVM)", n_classes, many,
                       n_classes * (n_classes - 1) // 2)
        return OvRLinearSVM(calibration_folds=calibration_folds, random_state=random_state, **params)
    if name in ("svm", "linear_svm"):
        kernel = "linear" if name == "linear_svm" else ("nystroem" if large else "rbf")
        if kernel == "linear":
            # Wide standardised tables are near-separable: C=1 makes liblinear crawl (~10x slower)
            params.setdefault("C", 0.01)
        if large and name == "svm":
            logger.warning("svm: exact RBF SVC is infeasible on this many rows; using a Nystroem "
                           "RBF approximation with a LinearSVC")
        return CalibratedSVM(kernel=kernel, calibration_folds=calibration_folds,
                             random_state=random_state, **params)
    raise ValueError(f"unknown classifier {name!r}; expected one of {MODEL_NAMES}")

