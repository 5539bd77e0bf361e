"""Exceptions raised by :mod:`deep`; each subclasses ``ValueError`` so callers can act on it."""

from __future__ import annotations

from cellcompare import config


class DeepError(ValueError):
    """Base class for errors a caller of :mod:`deep` can fix."""


class ConfigError(DeepError, config.ConfigError):
    """A configuration key or value is invalid (message names the key, expected vs found)."""


class WeightsUnavailableError(DeepError):
    """Pretrained weights were requested but the file is not on disk (no download offline)."""


class WeightsChecksumError(DeepError):
    """A weight file's sha256 does not start with the prefix embedded in its file name."""


class ImageInputError(DeepError):
    """An input image has the wrong rank, channel count or does not match the labels."""


class NotFittedError(DeepError):
    """A method that needs a trained model was called before ``fit`` or ``load``."""
