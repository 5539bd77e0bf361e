"""Classical models at many classes: a one-vs-rest linear SVM and bounded XGBoost settings.

An exact RBF ``SVC`` is one-vs-one: ``k (k - 1) / 2`` pairwise problems, 4,950 at 100 classes and
648,091 at RxRx1's 1,139, each followed by Platt calibration folds. Above ``MANY_CLASSES``
classes ``build_model("svm", ...)`` uses :class:`OvRLinearSVM` instead: ``k`` linear squared-hinge
SVMs (LinearSVC's primal objective) solved together by L-BFGS, so each iteration is two
matrix products (multi-threaded BLAS) rather than ``k`` single-threaded liblinear runs.

XGBoost grows one tree per class per round (``trees = classes x rounds``);
:func:`bounded_xgb_params` caps the rounds so that product stays under ``max_trees`` and sets
coarser histograms and column sampling, unless the configuration sets them itself.
"""

from __future__ import annotations

import logging

import numpy as np
from scipy.optimize import minimize, minimize_scalar
from scipy.special import log_softmax, softmax
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import StratifiedShuffleSplit
from sklearn.utils.class_weight import compute_sample_weight
from sklearn.utils.validation import check_is_fitted
from threadpoolctl import ThreadpoolController

__all__ = ["MANY_CLASSES", "MAX_TREES", "OvRLinearSVM", "bounded_xgb_params", "svm_kernel"]

logger = logging.getLogger(__name__)

#: Above this many classes ``svm`` is one-vs-rest linear and XGBoost is bounded.
MANY_CLASSES = 50
#: Most trees (classes x rounds) a bounded XGBoost fit may grow.
MAX_TREES = 20_000
#: Below this many multiply-adds per product the L-BFGS fit runs BLAS on one thread.
SMALL_PRODUCT = 20_000_000
#: XGBoost settings for many classes, used where the configuration leaves them out.
MANY_CLASS_XGB = {"max_bin": 64, "colsample_bytree": 0.3, "subsample": 0.5,
                  "early_stopping_rounds": 5, "learning_rate": 0.3, "max_depth": 4}


def svm_kernel(n_classes: int, n_rows: int, *, many_classes: int = MANY_CLASSES,
               large_rows: int = 20000) -> str:
    """The ``svm`` variant for a training set: ``ovr_linear``, ``nystroem`` or ``rbf``.

    Examples
    --------
    >>> from cellcompare.classical.scale import svm_kernel
    >>> svm_kernel(1139, 400), svm_kernel(4, 50000), svm_kernel(4, 400)
    ('ovr_linear', 'nystroem', 'rbf')
    """
    if n_classes > many_classes:
        return "ovr_linear"
    return "nystroem" if n_rows > large_rows else "rbf"


class OvRLinearSVM(ClassifierMixin, BaseEstimator):
    """One-vs-rest linear SVMs (squared hinge, L2), all classes solved at once by L-BFGS.

    Per class ``k`` it minimises LinearSVC's primal ``0.5 ||w_k||^2 + C sum_i s_i max(0, 1 -
    y_ik (w_k . x_i + b_k))^2`` (``y_ik = +1`` for class ``k``, else ``-1``; ``s_i`` the sample
    weight). Probabilities are ``softmax(decision / T)``: the temperature ``T`` is chosen on a
    stratified ``validation_fraction`` of the rows (lowest log-loss) after a fit on the rest, then
    the model is refitted on every row starting from those weights. When a class has fewer than
    2 rows there is no such split: ``T = 1`` and ``notes_`` says so.

    Parameters
    ----------
    C : float
        Inverse regularisation (0.01 suits wide standardised tables, as for ``linear_svm``).
    max_iter, tol : int, float
        L-BFGS iterations and gradient tolerance.
    validation_fraction : float
        Share of rows for the temperature.
    class_weight : None, "balanced" or dict
        Per-row weights ``s_i`` (``compute_sample_weight``) of the fit and the temperature.
    random_state : int or None
        Seed of the validation split.
    gamma, n_components, calibration_folds : ignored
        Accepted so that an ``svm`` configuration (and its search space) runs unchanged.
    """

    def __init__(self, C: float = 0.01, max_iter: int = 300, tol: float = 1e-4,
                 validation_fraction: float = 0.15, class_weight=None, random_state: int | None = 0,
                 gamma="scale", n_components: int = 500, calibration_folds: int = 3):
        self.C = C
        self.max_iter = max_iter
        self.tol = tol
        self.validation_fraction = validation_fraction
        self.class_weight = class_weight
        self.random_state = random_state
        self.gamma = gamma
        self.n_components = n_components
        self.calibration_folds = calibration_folds

    def _solve(self, X: np.ndarray, Y: np.ndarray, s: np.ndarray, start: np.ndarray | None) -> np.ndarray:
        """Weights ``(n_features + 1, n_classes)`` (last row: intercepts) minimising the objective."""
        n, d = X.shape
        k = Y.shape[1]
        C = np.float32(self.C)
        sw = s.astype(np.float32)[:, None]

        controller = ThreadpoolController()
        blas = [p["num_threads"] for p in controller.info() if p["user_api"] == "blas"]
        # BLAS threads cost more than they save on small products (40x slower on 2 busy cores)
        threads = 1 if n * d * k < SMALL_PRODUCT else max(blas, default=1)

        def objective(flat: np.ndarray):
            W = flat.reshape(d + 1, k).astype(np.float32)
            with controller.limit(limits=threads, user_api="blas"):
                margin = Y * (X @ W[:d] + W[d])
                r = np.maximum(0.0, 1.0 - margin)
                g = -2.0 * C * sw * Y * r  # d loss / d decision
                grad = np.empty_like(W)
                grad[:d] = W[:d] + X.T @ g
            loss = 0.5 * float(np.sum(W[:d].astype(np.float64) ** 2)) + float(C * np.sum(sw * r * r))
            grad[d] = g.sum(axis=0)
            return loss, grad.ravel().astype(np.float64)

        x0 = np.zeros((d + 1) * k) if start is None else start.ravel()
        # L-BFGS-B's own vector updates are level-1 BLAS: threaded they ran 10x slower (scipy
        # 1.17, 30k variables, 2 busy cores), so only the products above use several threads
        with controller.limit(limits=1, user_api="blas"):
            result = minimize(objective, x0, jac=True, method="L-BFGS-B",
                              options={"maxiter": self.max_iter, "gtol": self.tol})
        self.n_iter_ = getattr(self, "n_iter_", 0) + int(result.nit)
        return result.x.reshape(d + 1, k)

    def fit(self, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None) -> OvRLinearSVM:
        """Fit on ``X`` ``(n_rows, n_features)`` and encoded labels ``y``."""
        X = np.ascontiguousarray(X, dtype=np.float32)
        self.classes_, encoded = np.unique(y, return_inverse=True)
        Y = np.where(encoded[:, None] == np.arange(len(self.classes_)), 1.0, -1.0).astype(np.float32)
        s = np.ones(len(y)) if sample_weight is None else np.asarray(sample_weight, dtype=float)
        if self.class_weight is not None:
            s = s * compute_sample_weight(self.class_weight, y)
        self.n_iter_, self.notes_ = 0, []
        counts = np.bincount(encoded)
        n_val = max(round(self.validation_fraction * len(y)), len(self.classes_))
        start = None
        if counts.min() >= 2 and len(y) - n_val >= len(self.classes_) and self.validation_fraction > 0:
            split = StratifiedShuffleSplit(1, test_size=n_val, random_state=self.random_state)
            train, val = next(split.split(X, encoded))
            start = self._solve(X[train], Y[train], s[train], None)
            self.temperature_ = _temperature(_decision(X[val], start), encoded[val], s[val])
        else:
            self.temperature_ = 1.0
            why = ("validation_fraction is 0" if self.validation_fraction <= 0 else
                   f"the smallest class has {int(counts.min())} row(s) of {len(y)}, too few for a "
                   f"stratified temperature split")
            self.notes_.append(f"one-vs-rest linear svm: {why}; probabilities are the softmax of "
                               f"the decision values (temperature 1)")
            logger.warning(self.notes_[-1])
        self.coef_ = self._solve(X, Y, s, start)
        logger.info("one-vs-rest linear svm: %d classes, %d L-BFGS iterations, temperature %.3g",
                    len(self.classes_), self.n_iter_, self.temperature_)
        return self

    def decision_function(self, X: np.ndarray) -> np.ndarray:
        """Decision values ``(n_rows, n_classes)``."""
        check_is_fitted(self, "coef_")
        return _decision(np.asarray(X, dtype=np.float32), self.coef_)

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        """``softmax(decision / temperature_)``, rows sum to 1."""
        return softmax(self.decision_function(X) / self.temperature_, axis=1)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.classes_[np.argmax(self.decision_function(X), axis=1)]


def _decision(X: np.ndarray, W: np.ndarray) -> np.ndarray:
    W = W.astype(np.float32)
    return (X @ W[:-1] + W[-1]).astype(np.float64)


def _temperature(decision: np.ndarray, encoded: np.ndarray, weights: np.ndarray) -> float:
    """The temperature minimising the weighted log-loss of ``softmax(decision / T)``."""
    rows = np.arange(len(encoded))

    def loss(log_t: float) -> float:
        logp = log_softmax(decision / np.exp(log_t), axis=1)[rows, encoded]
        return -float(np.average(logp, weights=weights))

    return float(np.exp(minimize_scalar(loss, bounds=(-12.0, 12.0), method="bounded").x))


def bounded_xgb_params(n_classes: int, params: dict, *, many_classes: int = MANY_CLASSES,
                       max_trees: int = MAX_TREES) -> tuple[dict, str | None]:
    """XGBoost parameters bounded for ``n_classes``, and a note saying what changed (or None).

    Above ``many_classes`` classes, keys of ``MANY_CLASS_XGB`` the caller left out are set, and
    ``n_estimators`` (default 300) is capped at ``max_trees // n_classes`` rounds (at least 10):
    each round grows one tree per class.

    Examples
    --------
    >>> from cellcompare.classical.scale import bounded_xgb_params
    >>> p, note = bounded_xgb_params(1139, {"max_depth": 6})
    >>> p["n_estimators"], p["max_depth"], p["max_bin"]
    (17, 6, 64)
    """
    if n_classes <= many_classes:
        return dict(params), None
    out = {**MANY_CLASS_XGB, **params}
    rounds = int(params.get("n_estimators", 300))
    cap = max(10, max_trees // n_classes)
    out["n_estimators"] = min(rounds, cap)
    changed = {k: out[k] for k in out if k not in params or out[k] != params[k]}
    if not changed:
        return out, None
    return out, (f"xgboost with {n_classes} classes grows {n_classes} trees per round; bounded "
                 f"to {out['n_estimators'] * n_classes} trees with {changed}")
