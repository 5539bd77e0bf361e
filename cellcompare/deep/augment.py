"""Training augmentations on ``(C, H, W)`` float tensors with torchvision.transforms.v2.

Randomness comes from torch's global generator, which the DataLoader seeds per worker, so a run
is reproducible for a given seed. Every transform keeps the shape and dtype of its input.
"""

from __future__ import annotations

import torch
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from .config import AugmentConfig


def otsu_threshold(values: torch.Tensor, bins: int = 256) -> float:
    """Otsu's threshold of a tensor of intensities (maximises the between-class variance)."""
    lo, hi = float(values.min()), float(values.max())
    if hi <= lo:
        return lo
    hist = torch.histc(values.float(), bins=bins, min=lo, max=hi).double()
    edges = torch.linspace(lo, hi, bins + 1, dtype=torch.float64)
    centers = (edges[:-1] + edges[1:]) / 2
    weight1 = torch.cumsum(hist, 0)
    weight2 = torch.cumsum(hist.flip(0), 0).flip(0)
    mean1 = torch.cumsum(hist * centers, 0) / weight1.clamp(min=1e-12)
    mean2 = (torch.cumsum((hist * centers).flip(0), 0) / weight2.flip(0).clamp(min=1e-12)).flip(0)
    variance = weight1[:-1] * weight2[1:] * (mean1[:-1] - mean2[1:]) ** 2
    # the split after bin i lies at that bin's upper edge (not its centre), so every pixel of
    # bin i stays on the background side of ``values > threshold``
    return float(edges[int(torch.argmax(variance)) + 1])


def foreground_mask(image: torch.Tensor) -> torch.Tensor:
    """Boolean ``(H, W)`` mask: channel mean above its Otsu threshold."""
    mean = image.mean(dim=0)
    return mean > otsu_threshold(mean)


class MaskBackground(v2.Transform):
    """With probability ``p``, set every channel to 0 outside :func:`foreground_mask`."""

    def __init__(self, p: float = 1.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        if self.p <= 0 or torch.rand(()) >= self.p:
            return image
        return image * foreground_mask(image).to(image.dtype)


class RandomRot90(v2.Transform):
    """Rotate by a uniformly drawn multiple of 90 degrees (no interpolation)."""

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        k = int(torch.randint(4, ()))
        return torch.rot90(image, k, dims=(-2, -1)) if k else image


class RandomStepRotation(v2.Transform):
    """Rotate by a random multiple of ``step`` degrees (bilinear, same size, corners 0)."""

    def __init__(self, step: float) -> None:
        super().__init__()
        self.angles = [step * i for i in range(int(round(360 / step)))]

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        angle = self.angles[int(torch.randint(len(self.angles), ()))]
        if angle % 360 == 0:
            return image
        return F.rotate(image, angle, interpolation=v2.InterpolationMode.BILINEAR)


class ChannelJitter(v2.Transform):
    """Per-channel brightness (multiplicative) and contrast (around the channel mean) jitter."""

    def __init__(self, brightness: float = 0.1, contrast: float = 0.1) -> None:
        super().__init__()
        self.brightness = brightness
        self.contrast = contrast

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        n = image.shape[0]
        b = 1 + (torch.rand(n, 1, 1) * 2 - 1) * self.brightness
        c = 1 + (torch.rand(n, 1, 1) * 2 - 1) * self.contrast
        mean = image.mean(dim=(-2, -1), keepdim=True)
        return (((image - mean) * c + mean) * b).clamp_(min=0).to(image.dtype)


def build_augmentation(config: AugmentConfig) -> v2.Transform | None:
    """Compose the enabled augmentations, or ``None`` when nothing is enabled.

    Masking comes first (the Otsu mask is computed on the unrotated, unjittered image).
    """
    if not config.enabled:
        return None
    steps: list[v2.Transform] = []
    if config.mask_background_p > 0:
        steps.append(MaskBackground(config.mask_background_p))
    if config.rot90:
        steps.append(RandomRot90())
    if config.angle_step and config.angle_step % 90 != 0:
        steps.append(RandomStepRotation(config.angle_step))
    if config.flips:
        steps += [v2.RandomHorizontalFlip(), v2.RandomVerticalFlip()]
    if config.brightness > 0 or config.contrast > 0:
        steps.append(ChannelJitter(config.brightness, config.contrast))
    return v2.Compose(steps) if steps else None


def tta_views(images: torch.Tensor, mode: str) -> list[torch.Tensor]:
    """Test-time views of a ``(N, C, H, W)`` batch: identity, flips and/or 90-degree rotations."""
    if mode == "none":
        return [images]
    if mode == "flip":
        return [images, images.flip(-1), images.flip(-2)]
    rotations = [torch.rot90(images, k, dims=(-2, -1)) for k in range(4)]
    if mode == "rot90":
        return rotations
    return rotations + [r.flip(-1) for r in rotations]
