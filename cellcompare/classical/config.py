"""Configuration of a classical model as a frozen dataclass (YAML-loadable)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from cellcompare.classical.estimator import TableClassifier, check_params, make_classifier
from cellcompare.config import build, load_yaml


@dataclass(frozen=True)
class ClassicalConfig:
    """Everything :func:`classical.make_classifier` needs; defaults run.

    Examples
    --------
    >>> from cellcompare.classical import ClassicalConfig
    >>> config = ClassicalConfig.from_dict({"name": "xgboost", "params": {"max_depth": 4}})
    >>> config.build().model, config.build().model_params
    ('xgboost', {'max_depth': 4})
    """

    name: str = "svm"
    granularity: str = "image"
    normalize: str = "standard"
    tune: bool = False
    tune_budget: int = 8
    tune_seconds: float | None = None
    inner_folds: int = 3
    corr_threshold: float | None = 0.9
    mi_top_k: int | None = None
    random_state: int = 0
    n_jobs: int = 1
    class_weight: str | dict | None = None
    params: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_params(self.name, self.params)

    @classmethod
    def from_dict(cls, data: dict, *, source: str | Path | None = None) -> "ClassicalConfig":
        """Build from a mapping; unknown keys raise ``UnknownKeyError`` naming them."""
        return build(cls, data, source=source)

    @classmethod
    def from_yaml(cls, path: str | Path) -> "ClassicalConfig":
        """Load from a YAML file holding one mapping."""
        return load_yaml(cls, path)

    def build(self) -> TableClassifier:
        """Return the unfitted estimator."""
        kwargs = asdict(self)
        params = kwargs.pop("params")
        return make_classifier(kwargs.pop("name"), **kwargs, **params)
