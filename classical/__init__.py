"""Classical classifiers (SVM, XGBoost) on CellProfiler feature tables, the scikit-learn way."""

from classical.config import ClassicalConfig
from classical.errors import (
    ClassicalError,
    EmptyFeatureTableError,
    FeatureMismatchError,
    MissingMetadataError,
    NonNumericFeatureError,
    SingleClassError,
    TooFewMembersError,
    UnseenLabelError,
)
from classical.estimator import TableClassifier, make_classifier
from classical.importance import feature_importance
from classical.persist import load_model, save_model, top_k
from classical.tables import feature_columns, feature_family

__all__ = [
    "ClassicalConfig", "ClassicalError", "EmptyFeatureTableError", "FeatureMismatchError",
    "MissingMetadataError", "NonNumericFeatureError", "SingleClassError", "TableClassifier",
    "TooFewMembersError", "UnseenLabelError", "feature_columns", "feature_family",
    "feature_importance", "load_model", "make_classifier", "save_model", "top_k",
]
