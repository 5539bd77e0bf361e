"""Model construction: torchvision ResNet18 adapted to N channels, and a small CNN.

Weights are never downloaded. ``"imagenet"`` reads torchvision's own file
(``ResNet18_Weights.IMAGENET1K_V1``) from the torch hub cache, where
``torchvision.models.resnet18(weights=...)`` would have stored it, and checks its sha256 the way
torchvision does (the hex prefix in the file name, ``resnet18-f37072fd.pth``).

N-channel adaptation (the documented choice): for ``N != 3`` the first convolution is rebuilt
with N input channels, each initialised to the mean of the pretrained R, G and B filters times
``3 / N``. An image whose N channels are all equal to ``g`` therefore produces exactly the
activations the pretrained network gives for the grey RGB image ``(g, g, g)``, so the scale of
every later layer is preserved, and no channel is favoured (microscopy channels have no
correspondence to R, G or B). For ``N == 3`` the convolution is left unchanged.
"""

from __future__ import annotations

import hashlib
import logging
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.models import ResNet18_Weights, resnet18

from .errors import ConfigError, WeightsChecksumError, WeightsUnavailableError

logger = logging.getLogger(__name__)

_HASH_IN_NAME = re.compile(r"-([0-9a-fA-F]{8,64})\.[A-Za-z0-9]+$")


def imagenet_weights_path() -> Path:
    """Where torchvision keeps ``ResNet18_Weights.IMAGENET1K_V1`` (``<hub dir>/checkpoints/``)."""
    name = ResNet18_Weights.IMAGENET1K_V1.url.rsplit("/", 1)[-1]
    return Path(torch.hub.get_dir()) / "checkpoints" / name


def file_sha256(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_weights_file(path: str | Path) -> str:
    """Check that ``path``'s sha256 starts with the hex prefix embedded in its file name.

    Parameters
    ----------
    path : str or Path
        A file named like torchvision's checkpoints, ``name-<first 8+ hex of sha256>.pth``.

    Returns
    -------
    str
        The full hex sha256.

    Raises
    ------
    WeightsUnavailableError
        The file does not exist.
    WeightsChecksumError
        The name carries no hash prefix, or the content does not match it.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsUnavailableError(f"weight file {path} does not exist")
    match = _HASH_IN_NAME.search(path.name)
    if match is None:
        raise WeightsChecksumError(
            f"weight file {path}: name must end with '-<sha256 prefix, 8+ hex>.pth' "
            f"(torchvision convention, e.g. resnet18-f37072fd.pth) so its content can be verified")
    prefix = match.group(1).lower()
    sha = file_sha256(path)
    if not sha.startswith(prefix):
        raise WeightsChecksumError(
            f"weight file {path}: sha256 of the content is {sha}, expected it to start with "
            f"{prefix!r} (from the file name); the file is corrupt or not the one named")
    return sha


def _cached_imagenet() -> Path:
    """torchvision's ImageNet file in the hub cache, or :class:`WeightsUnavailableError` saying how
    to provide it (nothing is downloaded)."""
    path = imagenet_weights_path()
    if not path.is_file():
        raise WeightsUnavailableError(
            f"ImageNet weights (torchvision ResNet18_Weights.IMAGENET1K_V1) not found at {path}; "
            f"nothing is downloaded at runtime. Copy {ResNet18_Weights.IMAGENET1K_V1.url} there "
            f"(or set TORCH_HOME), pass weights: <path to resnet18-<sha256 prefix>.pth> (compare "
            f"--weights PATH), or set weights: none explicitly to train from random initialisation")
    return path


def weights_for(spec: str, arch: str) -> str:
    """The weights a model of ``arch`` will load for ``weights: spec``, checked on disk now.

    ``auto`` becomes ``imagenet`` when torchvision's file is in the hub cache and ``arch`` is
    ``resnet18``, else ``none``. ``imagenet`` and a path are looked up (a path's sha256 against
    the prefix in its name, :func:`verify_weights_file`), so a run whose deep model could not
    start fails before any work instead of after the features and the other models.

    Raises
    ------
    WeightsUnavailableError
        The ImageNet file is not cached, or the path does not exist.
    WeightsChecksumError
        The path's name carries no hash prefix, or its content does not match it.

    Examples
    --------
    >>> from cellcompare.deep.models import weights_for
    >>> weights_for("none", "resnet18"), weights_for("auto", "smallcnn")
    ('none', 'none')
    >>> weights_for("/no/such/resnet18-f37072fd.pth", "resnet18")
    Traceback (most recent call last):
    ...
    cellcompare.deep.errors.WeightsUnavailableError: weight file /no/such/resnet18-f37072fd.pth does not exist
    """
    if spec == "auto":
        return "imagenet" if arch == "resnet18" and imagenet_weights_path().is_file() else "none"
    if spec == "ssl":  # pretrained on the data itself when fitted (deep.ssl): nothing on disk
        return spec
    if spec == "imagenet":
        _cached_imagenet()
    elif spec != "none":
        verify_weights_file(Path(spec).expanduser())
    return spec


_SSL_HAS_NO_FILE = ("weights 'ssl' are pretrained on the images when the model is fitted (deep.ssl.pretrain); "
                    "build the network from them with deep.ssl.backbone, or fit a DeepClassifier")


def resolve_weights(spec: str) -> tuple[dict[str, torch.Tensor] | None, dict[str, Any]]:
    """Load the state dict named by ``spec`` (``"imagenet"``, ``"none"`` or a path).

    ``"ssl"`` names no file: those weights are learned from the images when the model is fitted
    (:func:`deep.ssl.pretrain`, loaded with :func:`deep.ssl.backbone`), so it is refused here.

    Returns
    -------
    state_dict : dict or None
        ``None`` for ``"none"``.
    info : dict
        ``{"source": "imagenet"|"path"|"none", "path": str|None, "sha256": str|None}``.
    """
    if spec == "none":
        return None, {"source": "none", "path": None, "sha256": None}
    if spec == "ssl":
        raise ConfigError(_SSL_HAS_NO_FILE)
    if spec == "imagenet":
        path = _cached_imagenet()
        source = "imagenet"
    else:
        path = Path(spec).expanduser()
        source = "path"
    sha = verify_weights_file(path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise WeightsChecksumError(f"weight file {path}: expected a state dict, found {type(state).__name__}")
    logger.info("loaded %s weights from %s (sha256 %s)", source, path, sha[:12])
    return state, {"source": source, "path": str(path), "sha256": sha}


def adapt_first_conv(conv: nn.Conv2d, in_channels: int) -> nn.Conv2d:
    """Return ``conv`` rebuilt for ``in_channels`` inputs (mean RGB filter times ``3 / N``).

    ``conv`` itself is returned when its channel count already matches.
    """
    if conv.in_channels == in_channels:
        return conv
    new = nn.Conv2d(in_channels, conv.out_channels, kernel_size=conv.kernel_size, stride=conv.stride,
                    padding=conv.padding, dilation=conv.dilation, groups=conv.groups,
                    bias=conv.bias is not None)
    with torch.no_grad():
        mean = conv.weight.mean(dim=1, keepdim=True)
        new.weight.copy_(mean.repeat(1, in_channels, 1, 1) * (conv.in_channels / in_channels))
        if conv.bias is not None:
            new.bias.copy_(conv.bias)
    return new


def build_resnet18(in_channels: int, n_classes: int,
                   state_dict: dict[str, torch.Tensor] | None = None) -> nn.Module:
    """torchvision ResNet18 with ``state_dict`` loaded, N-channel stem and a new head.

    The head (``fc``) is always freshly initialised with ``n_classes`` outputs.
    """
    model = resnet18(weights=None)
    if state_dict is not None:
        try:
            model.load_state_dict(state_dict)
        except RuntimeError as exc:
            raise WeightsChecksumError(f"weights do not fit torchvision resnet18: {exc}") from exc
    model.conv1 = adapt_first_conv(model.conv1, in_channels)
    model.fc = nn.Linear(model.fc.in_features, n_classes)
    return model


class SmallCNN(nn.Module):
    """Four conv-BN-ReLU blocks with max pooling, global average pooling and a linear head.

    Parameters
    ----------
    in_channels : int
        Channels of the input ``(N, C, H, W)``.
    n_classes : int
        Outputs (logits).
    width : int
        Channels of the first block; doubled at each block.
    """

    def __init__(self, in_channels: int, n_classes: int, width: int = 32) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        channels = in_channels
        for i in range(4):
            out = width * 2 ** i
            layers += [nn.Conv2d(channels, out, 3, padding=1, bias=False), nn.BatchNorm2d(out),
                       nn.ReLU(inplace=True)]
            if i < 3:
                layers.append(nn.MaxPool2d(2))
            channels = out
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(0.2)
        self.fc = nn.Linear(channels, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(torch.flatten(self.pool(self.features(x)), 1)))


def build_model(arch: str, in_channels: int, n_classes: int,
                weights: str = "none") -> tuple[nn.Module, dict[str, Any]]:
    """Build ``arch`` for ``in_channels`` inputs and ``n_classes`` outputs.

    Returns
    -------
    model : nn.Module
    weights_info : dict
        See :func:`resolve_weights`.
    """
    if in_channels < 1 or n_classes < 2:
        raise ConfigError(f"need in_channels >= 1 and n_classes >= 2, found {in_channels}, {n_classes}")
    if arch == "resnet18":
        state, info = resolve_weights(weights)
        return build_resnet18(in_channels, n_classes, state), info
    if arch == "smallcnn":
        if weights == "ssl":
            raise ConfigError(_SSL_HAS_NO_FILE)
        if weights != "none":
            raise ConfigError(f"arch 'smallcnn' is trained from scratch; weights must be 'none', found {weights!r}")
        return SmallCNN(in_channels, n_classes), {"source": "none", "path": None, "sha256": None}
    raise ConfigError(f"arch must be 'resnet18' or 'smallcnn', found {arch!r}")
