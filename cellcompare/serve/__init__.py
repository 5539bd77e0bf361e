"""Serve trained models: offline top-k prediction, safe renaming and an HTTP endpoint."""

from cellcompare.serve.errors import (
    InputSpecError,
    ModelDirError,
    RenameError,
    ServeError,
)
from cellcompare.serve.model_dir import InputSpec, export_model, read_spec
from cellcompare.serve.normalization import MIN_PLATE_IMAGES, Normalization
from cellcompare.serve.predict import (
    PredictionRow,
    expand_inputs,
    predict_inputs,
    read_file_sample,
    write_csv,
)
from cellcompare.serve.predictor import (
    ClassicalPredictor,
    DeepPredictor,
    Outcome,
    Predictor,
    load_predictor,
    top_pairs,
)
from cellcompare.serve.rename import (
    apply_renames,
    new_name,
    plan_renames,
    sanitize,
    undo,
)

__all__ = [
    "ClassicalPredictor", "DeepPredictor", "InputSpec", "InputSpecError", "MIN_PLATE_IMAGES",
    "ModelDirError", "Normalization", "Outcome", "PredictionRow", "Predictor", "RenameError",
    "ServeError", "apply_renames", "expand_inputs",
    "export_model", "load_predictor", "new_name", "plan_renames", "predict_inputs",
    "read_file_sample", "read_spec", "sanitize", "top_pairs", "undo", "write_csv",
]
