"""Classical classifiers (SVM, XGBoost) on CellProfiler feature tables, the scikit-learn way."""

from cellcompare.classical.config import ClassicalConfig
from cellcompare.classical.errors import (
    ClassicalError,
    EmptyFeatureTableError,
    FeatureMismatchError,
    MissingMetadataError,
    NonFiniteFeaturesError,
    NonNumericFeatureError,
    SingleClassError,
    TooFewMembersError,
    UnseenLabelError,
)
from cellcompare.classical.estimator import TableClassifier, make_classifier
from cellcompare.classical.importance import feature_importance
from cellcompare.classical.persist import load_model, save_model
from cellcompare.classical.tables import feature_columns, feature_family

__all__ = [
    "ClassicalConfig", "ClassicalError", "EmptyFeatureTableError", "FeatureMismatchError",
    "MissingMetadataError", "NonFiniteFeaturesError", "NonNumericFeatureError", "SingleClassError",
    "TableClassifier", "TooFewMembersError", "UnseenLabelError", "feature_columns", "feature_family",
    "feature_importance", "load_model", "make_classifier", "save_model",
]
