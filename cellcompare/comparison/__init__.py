"""Every model on identical folds, with honest statistics.

>>> from cellcompare.comparison import load_config, run
>>> config = load_config("configs/demo.yaml")   # paths are relative to the project root
>>> [m.label for m in config.models], config.folds.group_column
(['svm', 'xgboost', 'resnet18', 'smallcnn'], 'group')
>>> results_dir = run(config)  # the whole demo, minutes: make demo runs it  # doctest: +SKIP
"""

from cellcompare.comparison.config import (
                                           CompareConfig,
                                           ConfigError,
                                           FoldsConfig,
                                           ModelSpec,
                                           load_config,
)
from cellcompare.comparison.context import RunContext
from cellcompare.comparison.metrics import METRIC_NAMES, compute_metrics, top_k_accuracy
from cellcompare.comparison.adapters import (
                                           ClassicalModel,
                                           DeepModel,
                                           FoldData,
                                           ModelAdapter,
                                           ModelInputError,
                                           build_adapter,
                                           register_model,
                                           registered_names,
                                           unregister_model,
)
from cellcompare.comparison.runner import run
from cellcompare.comparison.splits import (
                                           FoldError,
                                           FoldMismatchError,
                                           LeakageError,
                                           check_no_leakage,
                                           load_folds,
                                           make_folds,
                                           save_folds,
)
from cellcompare.comparison.stats import compare_models, mcnemar, paired_tests

__all__ = [
    "CompareConfig", "ConfigError", "FoldsConfig", "ModelSpec", "load_config", "RunContext",
    "METRIC_NAMES", "compute_metrics", "top_k_accuracy", "ClassicalModel", "DeepModel", "FoldData",
    "ModelAdapter", "ModelInputError", "build_adapter", "register_model", "registered_names",
    "unregister_model", "run", "FoldError", "FoldMismatchError", "LeakageError",
    "check_no_leakage", "load_folds", "make_folds", "save_folds", "compare_models", "mcnemar",
    "paired_tests",
]
