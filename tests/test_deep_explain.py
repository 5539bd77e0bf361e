"""Grad-CAM against a closed form: a one-filter network whose class score is the mean activation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from cellcompare.deep.explain import default_cam_layer, grad_cam
from cellcompare.deep.models import build_model


class OneFilter(nn.Module):
    """features = ReLU(x) (a 1x1 identity convolution); logits = [+mean, -mean] of the map."""

    def __init__(self) -> None:
        super().__init__()
        conv = nn.Conv2d(1, 1, 1, bias=False)
        with torch.no_grad():
            conv.weight.fill_(1.0)
        self.features = nn.Sequential(conv, nn.ReLU())
        self.fc = nn.Linear(1, 2, bias=False)
        with torch.no_grad():
            self.fc.weight.copy_(torch.tensor([[1.0], [-1.0]]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x).mean(dim=(2, 3)))


def _spot_image() -> torch.Tensor:
    image = torch.zeros(1, 1, 12, 12)
    image[0, 0, 2:5, 7:10] = 2.0    # the evidence
    image[0, 0, 8, 1] = 1.0         # weaker evidence elsewhere
    image[0, 0, 10, 10] = -3.0      # negative input is removed by the ReLU
    return image


def test_cam_equals_normalised_activation_for_the_supported_class():
    image = _spot_image()
    cam = grad_cam(OneFilter(), image, torch.tensor([0]))
    # gradient of the mean is uniform, so the map is ReLU(x) / max ReLU(x)
    expected = image.clamp_min(0)[0, 0] / 2.0
    assert cam.shape == (1, 12, 12)
    np.testing.assert_allclose(cam[0].numpy(), expected.numpy(), atol=1e-6)


def test_cam_is_zero_for_a_class_the_image_argues_against():
    cam = grad_cam(OneFilter(), _spot_image(), torch.tensor([1]))
    assert float(cam.abs().max()) == 0.0


def test_default_target_is_the_predicted_class():
    model = OneFilter()
    image = _spot_image()
    assert int(model(image).argmax()) == 0
    np.testing.assert_array_equal(grad_cam(model, image).numpy(),
                                  grad_cam(model, image, torch.tensor([0])).numpy())


def test_model_mode_and_parameter_gradients_are_left_alone():
    model = OneFilter().train()
    grad_cam(model, _spot_image())
    assert model.training
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("arch,layer", [("resnet18", "layer4"), ("smallcnn", "features")])
def test_real_architectures_give_unit_maps(arch, layer):
    torch.manual_seed(0)
    model, _ = build_model(arch, 3, 4, "none")
    assert default_cam_layer(model) is getattr(model, layer)
    images = torch.rand(2, 3, 32, 32)
    cams = grad_cam(model, images, torch.tensor([0, 3]))
    assert cams.shape == (2, 32, 32)
    assert float(cams.min()) >= 0.0
    assert all(float(c.max()) in (0.0, pytest.approx(1.0)) for c in cams)


def test_bad_inputs_raise_value_errors():
    model = OneFilter()
    with pytest.raises(ValueError, match=r"\(N, C, H, W\)"):
        grad_cam(model, torch.zeros(1, 12, 12))
    with pytest.raises(ValueError, match="targets has 2 entries for 1 images"):
        grad_cam(model, _spot_image(), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="no nn.Conv2d"):
        default_cam_layer(nn.Linear(2, 2))
