"""Configuration of the deep models: frozen dataclasses loadable from a dict or YAML."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from cellcompare.config import build, load_yaml

from .errors import ConfigError

ARCHS = ("resnet18", "smallcnn")
OPTIMIZERS = ("adamw", "sgd")
DEVICES = ("auto", "cpu", "cuda")
TTA_MODES = ("none", "flip", "rot90", "d4")
RESIZE_MODES = ("pad", "crop")
NORMALIZE_MODES = ("none", "group", "image")
INPUT_CACHE_MODES = ("float16", "float32", "none")


@dataclass(frozen=True)
class AugmentConfig:
    """Training-time augmentation (never applied at evaluation).

    Parameters
    ----------
    enabled : bool
        Master switch.
    rot90 : bool
        Random rotation by a multiple of 90 degrees (lossless).
    angle_step : float
        Random rotation by a multiple of ``angle_step`` degrees (0 disables); corners are 0.
    flips : bool
        Random horizontal and vertical flips.
    mask_background_p : float
        Probability of setting pixels outside the foreground (Otsu threshold on the channel
        mean) to 0.
    brightness : float
        Per-channel multiplicative brightness factor drawn from ``[1 - b, 1 + b]``.
    contrast : float
        Per-channel contrast factor around the channel mean drawn from ``[1 - c, 1 + c]``.
    """

    enabled: bool = True
    rot90: bool = True
    angle_step: float = 45.0
    flips: bool = True
    mask_background_p: float = 0.0
    brightness: float = 0.1
    contrast: float = 0.1


@dataclass(frozen=True)
class TuneConfig:
    """Random search over the learning rate (log-uniform) and batch size, inner split only.

    Parameters
    ----------
    enabled : bool
        Run the search in ``fit`` before the final training.
    n_trials : int
        Maximum number of trials.
    time_budget_s : float
        Stop starting new trials once this many seconds have passed.
    epochs : int
        Epochs per trial.
    lr_range : tuple of float
        Bounds of the log-uniform learning-rate distribution.
    batch_sizes : tuple of int
        Candidate batch sizes.
    """

    enabled: bool = False
    n_trials: int = 8
    time_budget_s: float = 1800.0
    epochs: int = 3
    lr_range: tuple[float, float] = (1e-3, 1e-1)
    batch_sizes: tuple[int, ...] = (32, 64, 128, 256)


@dataclass(frozen=True)
class SSLConfig:
    """Self-supervised pretraining (``weights: ssl``; ``deep.ssl``): SimCLR on the images.

    Parameters
    ----------
    epochs : int
        Passes over the pretraining images.
    batch_size : int or None
        Images per step (each seen in two views); ``None``: the model's ``batch_size``.
    lr : float
        AdamW learning rate (linear warm-up over the first epoch, then cosine).
    temperature : float
        Of the NT-Xent loss.
    projection_dim : int
        Output of the projection head (discarded after pretraining).
    crop_scale : float
        Smallest side fraction of the random resized crop of each view (1 disables it).
    use_test_images : bool
        Pretrain on every image of the run, test images included (transductive: they are seen
        unlabeled; the report says so). ``False``: each fold's training images only.
    """

    epochs: int = 20
    batch_size: int | None = None
    lr: float = 1e-3
    temperature: float = 0.2
    projection_dim: int = 128
    crop_scale: float = 0.6
    use_test_images: bool = False

    def __post_init__(self) -> None:
        if self.epochs < 1:
            raise ConfigError(f"ssl.epochs must be >= 1, found {self.epochs}")
        if self.batch_size is not None and self.batch_size < 2:
            raise ConfigError(f"ssl.batch_size must be >= 2 (pairs of views), found {self.batch_size}")
        if not self.lr > 0 or not self.temperature > 0:
            raise ConfigError(f"ssl.lr and ssl.temperature must be > 0, found {self.lr}, {self.temperature}")
        if self.projection_dim < 1:
            raise ConfigError(f"ssl.projection_dim must be >= 1, found {self.projection_dim}")
        if not 0 < self.crop_scale <= 1:
            raise ConfigError(f"ssl.crop_scale must be in (0, 1], found {self.crop_scale}")


@dataclass(frozen=True)
class DeepConfig:
    """Everything that defines a deep model and its training run.

    ``weights`` is ``"imagenet"`` (torchvision ``ResNet18_Weights.IMAGENET1K_V1`` from the torch
    hub cache, never downloaded), ``"none"`` (random initialisation), ``"ssl"`` (self-supervised
    pretraining on the training images first, ``ssl:`` settings, :mod:`deep.ssl`) or a path to a
    state dict whose file name carries its sha256 prefix (``name-<hex>.pth``). ``num_workers=None`` picks
    ``min(8, cpu count)`` on CUDA and 0 on CPU. ``tta`` is one of ``none``, ``flip``, ``rot90``,
    ``d4`` (all 8 rotations/flips). ``precise_bn`` re-estimates the BatchNorm running statistics
    on up to ``precise_bn_batches`` training batches after every epoch, before validation (see
    :func:`deep.train.recalibrate_batchnorm`).

    ``resize`` is how an image becomes ``image_size`` square: ``pad`` scales the long side and
    zero-pads the short one (keeps the aspect ratio, e.g. 1110x420 embryos keep their ends),
    ``crop`` scales the short side and centre-crops. ``class_weight`` weights the loss:
    ``None`` (all 1), ``"balanced"`` (n / (k * n_class)) or ``{class: weight}``.

    ``input_cache`` (whole-image models in a comparison): each site is decoded and resized once
    into the run's ``{output}/inputs/<key>/inputs.npy`` (:mod:`deep.input_cache`), stored as
    ``float16`` (half the bytes; values within 2.4e-4 of the decoded ones) or ``float32`` (the
    decoded values exactly), and every fold and epoch reads it; ``none`` decodes the images
    in every epoch.

    Single-cell crops (``granularity: cell`` in a comparison, :mod:`deep.crops`): ``crop_size``
    (``None`` = 3.5 x the median nucleus diameter), ``crop_mask`` (zero pixels outside the cell),
    ``cells_per_image`` (at most this many crops per training image, drawn once with ``seed``;
    ``None`` = all) and ``normalize``: ``group`` divides each channel by its mean over the crops of
    the same plate (the configured group; test plates use their own crops, as the classical
    ``plate_robust`` does), ``image`` by the mean over the same image's crops, ``none`` keeps the
    [0, 1] intensities. The classifier's own per-channel standardisation follows either way.
    """

    arch: str = "resnet18"
    weights: str = "imagenet"
    image_size: int = 256
    epochs: int = 20
    batch_size: int = 64
    lr: float = 1e-2
    optimizer: str = "adamw"
    momentum: float = 0.9
    weight_decay: float = 1e-4
    label_smoothing: float = 0.0
    warmup_epochs: float = 1.0
    patience: int = 5
    val_fraction: float = 0.15
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    tta: str = "none"
    device: str = "auto"
    num_workers: int | None = None
    amp: bool = True
    compile: bool = False
    precise_bn: bool = True
    precise_bn_batches: int = 50
    seed: int = 0
    tune: TuneConfig = field(default_factory=TuneConfig)
    checkpoint_dir: str | None = None
    progress: bool = True
    resize: str = "pad"
    class_weight: Any = None
    crop_size: int | None = None
    crop_mask: bool = False
    cells_per_image: int | None = None
    normalize: str = "none"
    input_cache: str = "float16"
    ssl: SSLConfig = field(default_factory=SSLConfig)

    def __post_init__(self) -> None:
        _check_choice("arch", self.arch, ARCHS)
        _check_choice("optimizer", self.optimizer, OPTIMIZERS)
        _check_choice("device", self.device, DEVICES)
        _check_choice("tta", self.tta, TTA_MODES)
        _check_choice("resize", self.resize, RESIZE_MODES)
        _check_choice("normalize", self.normalize, NORMALIZE_MODES)
        _check_choice("input_cache", self.input_cache, INPUT_CACHE_MODES)
        check_class_weight(self.class_weight)
        for key in ("crop_size", "cells_per_image"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ConfigError(f"{key} must be a positive integer or null, found {value!r}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"val_fraction must be in [0, 1), found {self.val_fraction}")
        for key in ("image_size", "epochs", "batch_size"):
            if getattr(self, key) < 1:
                raise ConfigError(f"{key} must be >= 1, found {getattr(self, key)}")
        if self.arch == "smallcnn" and self.weights == "imagenet":
            raise ConfigError("arch 'smallcnn' has no ImageNet weights; set weights: none")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str | Path | None = None,
                  where: str = "") -> "DeepConfig":
        """Build a config from a plain mapping (as loaded from YAML); unknown keys are errors.

        Example
        -------
        >>> DeepConfig.from_dict({"arch": "smallcnn", "weights": "none", "augment": {"flips": False}})
        ... # doctest: +ELLIPSIS
        DeepConfig(arch='smallcnn', ...)
        """
        data = dict(data)
        if data.get("weights") is not None:
            data["weights"] = str(data["weights"])
        return build(cls, data, where=where, source=source)

    @classmethod
    def from_yaml(cls, path: str | Path) -> "DeepConfig":
        """Load a config from a YAML file holding one mapping."""
        return load_yaml(cls, path)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (JSON/YAML serialisable)."""
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> "DeepConfig":
        """Return a copy with ``changes`` applied."""
        return dataclasses.replace(self, **changes)


def check_class_weight(value: Any) -> None:
    """Raise :class:`ConfigError` unless ``value`` is None, ``"balanced"`` or ``{class: weight > 0}``."""
    if value is None or value == "balanced":
        return
    if not isinstance(value, Mapping) or not value:
        raise ConfigError(f"class_weight must be 'balanced', a mapping {{class: weight}} or null, "
                          f"found {value!r}")
    bad = {k: v for k, v in value.items()
           if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0}
    if bad:
        raise ConfigError(f"class_weight values must be positive numbers, found {bad}")


def _check_choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"{key} must be one of {choices}, found {value!r}")

