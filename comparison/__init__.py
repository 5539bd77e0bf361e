"""Every model on identical folds, with honest statistics.

>>> from comparison import load_config, run
>>> results_dir = run(load_config("configs/demo.yaml"))    # doctest: +SKIP
"""

from comparison.config import (CompareConfig, ConfigError, DatasetSection, FoldsConfig, ModelSpec,
                               SynthConfig, load_config)
from comparison.metrics import METRIC_NAMES, compute_metrics, top_k_accuracy
from comparison.models import (ClassicalModel, DeepModel, FoldData, ModelAdapter, ModelInputError,
                               build_adapter, register_model, registered_names)
from comparison.runner import run
from comparison.splits import (FoldError, FoldMismatchError, LeakageError, check_no_leakage,
                               load_folds, make_folds, save_folds)
from comparison.stats import compare_models, mcnemar, paired_tests

__all__ = [
    "CompareConfig", "ConfigError", "DatasetSection", "FoldsConfig", "ModelSpec", "SynthConfig",
    "load_config", "METRIC_NAMES", "compute_metrics", "top_k_accuracy", "ClassicalModel",
    "DeepModel", "FoldData", "ModelAdapter", "ModelInputError", "build_adapter", "register_model",
    "registered_names", "run", "FoldError", "FoldMismatchError", "LeakageError", "check_no_leakage",
    "load_folds", "make_folds", "save_folds", "compare_models", "mcnemar", "paired_tests",
]
