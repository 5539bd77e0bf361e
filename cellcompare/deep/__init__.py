"""Deep baselines: ImageNet-pretrained ResNet18 for N-channel images and a small CNN.

>>> from cellcompare.deep import DeepClassifier, DeepConfig
>>> clf = DeepClassifier(DeepConfig(arch="resnet18", weights="none"))  # built at fit, not here
>>> clf.config.arch, clf.config.weights
('resnet18', 'none')
"""

from .classifier import DeepClassifier, inner_split
from .config import ARCHS, AugmentConfig, DeepConfig, SSLConfig, TuneConfig
from .errors import (
                     ConfigError,
                     DeepError,
                     ImageInputError,
                     NotFittedError,
                     WeightsChecksumError,
                     WeightsUnavailableError,
)
from .inputs import SampleImages, sample_input
from .models import (
                     adapt_first_conv,
                     build_model,
                     imagenet_weights_path,
                     verify_weights_file,
)

__all__ = ["AugmentConfig", "ConfigError", "DeepClassifier", "DeepConfig", "DeepError", "ImageInputError",
           "NotFittedError", "SSLConfig", "TuneConfig", "WeightsChecksumError", "WeightsUnavailableError",
           "adapt_first_conv", "build_model", "imagenet_weights_path", "inner_split", "verify_weights_file",
           "SampleImages", "sample_input", "ARCHS"]
