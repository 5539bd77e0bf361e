"""Every model on identical folds, with honest statistics.

>>> from cellcompare.comparison import load_config, run
>>> config = load_config("configs/demo.yaml")   # paths are relative to the project root
>>> [m.label for m in config.models], config.folds.group_column
(['svm', 'xgboost', 'resnet18', 'resnet18_ssl', 'svm_ssl', 'smallcnn'], 'group')
>>> results_dir = run(config)  # the whole demo, minutes: make demo runs it  # doctest: +SKIP
"""

from cellcompare.lazy import lazy_exports

#: Public names and their modules, imported on first use (``cellcompare.lazy``): the command
#: line imports ``comparison.cli`` without loading the models.
_EXPORTS = {
    **dict.fromkeys(["CompareConfig", "ConfigError", "FoldsConfig", "ModelSpec", "load_config"],
                    "config"),
    "RunContext": "context",
    **dict.fromkeys(["METRIC_NAMES", "compute_metrics", "top_k_accuracy"], "metrics"),
    **dict.fromkeys(["ClassicalModel", "DeepModel", "FoldData", "ModelAdapter", "ModelInputError",
                     "build_adapter", "register_model", "registered_names", "unregister_model"],
                    "adapters"),
    "run": "runner",
    **dict.fromkeys(["FoldError", "FoldMismatchError", "LeakageError", "check_no_leakage",
                     "load_folds", "make_folds", "save_folds"], "splits"),
    **dict.fromkeys(["compare_models", "mcnemar", "paired_tests"], "stats"),
}
__all__ = list(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
