"""Grad-CAM: where in an image a convolutional classifier finds the evidence for a class.

A pure function over a torch model and an input tensor (no files, no plotting), after Selvaraju
et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based Localization" (2017):
the feature maps of the last convolutional stage are weighted by the spatial mean of the class
score's gradient, summed, passed through ReLU and upsampled to the input size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["default_cam_layer", "grad_cam"]


def default_cam_layer(model: nn.Module) -> nn.Module:
    """The last convolutional stage of ``model``: ``layer4`` (ResNet), ``features`` (SmallCNN),
    else the last ``nn.Conv2d``.

    Raises
    ------
    ValueError
        The model has no convolution.
    """
    for name in ("layer4", "features"):
        layer = getattr(model, name, None)
        if isinstance(layer, nn.Module):
            return layer
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ValueError(f"{type(model).__name__} has no nn.Conv2d layer for Grad-CAM; pass layer=")
    return convs[-1]


def grad_cam(model: nn.Module, images: torch.Tensor, targets: torch.Tensor | None = None, *,
             layer: nn.Module | None = None) -> torch.Tensor:
    """Grad-CAM maps of ``images`` for the ``targets`` classes, each scaled to [0, 1].

    Parameters
    ----------
    model : nn.Module
        A classifier returning logits ``(N, n_classes)``; it is run in evaluation mode and its
        mode and gradients are left as they were.
    images : torch.Tensor
        ``(N, C, H, W)`` model input (already normalised as the model expects).
    targets : torch.Tensor, optional
        ``(N,)`` class index per image; the predicted class when absent.
    layer : nn.Module, optional
        Module whose 4-D output is explained; :func:`default_cam_layer` when absent.

    Returns
    -------
    torch.Tensor
        ``(N, H, W)`` float32 on the CPU; each map divided by its maximum (all zeros when no
        location supports the class).

    Raises
    ------
    ValueError
        ``images`` is not 4-D, ``targets`` has the wrong length, or ``layer`` does not output a
        4-D tensor.

    Examples
    --------
    >>> import torch
    >>> from cellcompare.deep.explain import grad_cam
    >>> from cellcompare.deep.models import build_model
    >>> model, _ = build_model("smallcnn", in_channels=2, n_classes=3)
    >>> batch = torch.rand(4, 2, 32, 32)
    >>> cams = grad_cam(model, batch)
    >>> tuple(cams.shape), bool(cams.min() >= 0), bool(cams.max() <= 1)
    ((4, 32, 32), True, True)
    """
    if images.ndim != 4:
        raise ValueError(f"images must be (N, C, H, W), found shape {tuple(images.shape)}")
    layer = layer if layer is not None else default_cam_layer(model)
    captured: dict[str, torch.Tensor] = {}

    def keep(_module, _inputs, output):
        captured["maps"] = output

    handle = layer.register_forward_hook(keep)
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad():
            x = images.detach().to(next(model.parameters()).device).requires_grad_(False)
            logits = model(x)
            maps = captured.get("maps")
            if maps is None or maps.ndim != 4:
                raise ValueError(f"layer {type(layer).__name__} did not output a 4-D tensor")
            if targets is None:
                targets = logits.argmax(dim=1)
            targets = torch.as_tensor(targets, device=logits.device).long().view(-1)
            if targets.shape[0] != logits.shape[0]:
                raise ValueError(f"targets has {targets.shape[0]} entries for {logits.shape[0]} images")
            score = logits.gather(1, targets[:, None]).sum()
            (grads,) = torch.autograd.grad(score, maps)
    finally:
        handle.remove()
        model.train(was_training)
    weights = grads.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * maps).sum(dim=1, keepdim=True)).detach()
    cam = F.interpolate(cam, size=images.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    peak = cam.flatten(1).max(dim=1).values.clamp_min(1e-12).view(-1, 1, 1)
    return (cam / peak).float().cpu()
