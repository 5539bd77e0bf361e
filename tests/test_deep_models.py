"""deep.models: N-channel ResNet18, weight files and their checks (fake weights, CPU)."""

import shutil

import pytest
import torch
from torch import nn
from torchvision.models import resnet18

from cellcompare.deep import (
    ConfigError,
    DeepConfig,
    WeightsChecksumError,
    WeightsUnavailableError,
)
from cellcompare.deep.models import (
    SmallCNN,
    adapt_first_conv,
    build_model,
    file_sha256,
    imagenet_weights_path,
    resolve_weights,
    verify_weights_file,
)

torch.set_num_threads(2)


@pytest.fixture(scope="module")
def fake_weights(tmp_path_factory):
    """A randomly initialised resnet18 state dict saved under its real sha256 prefix."""
    torch.manual_seed(123)
    raw = tmp_path_factory.mktemp("weights") / "raw.pth"
    torch.save(resnet18(weights=None).state_dict(), raw)
    path = raw.with_name(f"resnet18-{file_sha256(raw)[:10]}.pth")
    raw.rename(path)
    return path


@pytest.mark.parametrize("channels", [1, 3, 6])
def test_resnet18_output_shape_for_n_channels(channels):
    model, info = build_model("resnet18", channels, 4, "none")
    assert model.conv1.in_channels == channels
    out = model.eval()(torch.rand(2, channels, 32, 32))
    assert out.shape == (2, 4)
    assert info == {"source": "none", "path": None, "sha256": None}


@pytest.mark.parametrize("channels", [1, 6])
def test_smallcnn_output_shape(channels):
    assert SmallCNN(channels, 3).eval()(torch.rand(2, channels, 32, 32)).shape == (2, 3)


def test_three_channels_reproduce_torchvision_exactly(fake_weights):
    reference = resnet18(weights=None)
    reference.load_state_dict(torch.load(fake_weights, weights_only=True))
    model, info = build_model("resnet18", 3, 5, str(fake_weights))
    assert torch.equal(model.conv1.weight, reference.conv1.weight)
    reference.fc = nn.Identity()
    model.fc = nn.Identity()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), reference.eval()(x))
    assert info["source"] == "path" and info["sha256"] == file_sha256(fake_weights)


@pytest.mark.parametrize("channels", [1, 2, 6])
def test_adapted_conv_gives_grey_rgb_response(channels):
    torch.manual_seed(0)
    conv = resnet18(weights=None).conv1
    grey = torch.rand(1, 1, 32, 32)
    adapted = adapt_first_conv(conv, channels)
    assert adapted.weight.shape == (64, channels, 7, 7)
    with torch.no_grad():
        expected = conv(grey.repeat(1, 3, 1, 1))
        found = adapted(grey.repeat(1, channels, 1, 1))
    torch.testing.assert_close(found, expected, rtol=1e-4, atol=1e-5)


def test_new_head_has_n_classes(fake_weights):
    model, _ = build_model("resnet18", 6, 7, str(fake_weights))
    assert model.fc.out_features == 7


def test_wrong_sha_prefix_is_rejected(fake_weights, tmp_path):
    wrong = tmp_path / "resnet18-deadbeef.pth"
    shutil.copy(fake_weights, wrong)
    with pytest.raises(WeightsChecksumError, match="deadbeef"):
        verify_weights_file(wrong)
    with pytest.raises(WeightsChecksumError):
        build_model("resnet18", 3, 2, str(wrong))


def test_name_without_prefix_is_rejected(fake_weights, tmp_path):
    plain = tmp_path / "resnet18.pth"
    shutil.copy(fake_weights, plain)
    with pytest.raises(WeightsChecksumError, match="sha256 prefix"):
        verify_weights_file(plain)


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(WeightsUnavailableError, match="does not exist"):
        resolve_weights(str(tmp_path / "resnet18-0123abcd.pth"))


def test_imagenet_missing_names_the_cache_path_and_weights_none(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    expected = tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    assert imagenet_weights_path() == expected
    with pytest.raises(WeightsUnavailableError) as info:
        build_model("resnet18", 6, 3, "imagenet")
    assert str(expected) in str(info.value) and "weights: none" in str(info.value)


def test_imagenet_cache_file_is_checksummed(fake_weights, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    (tmp_path / "checkpoints").mkdir()
    shutil.copy(fake_weights, tmp_path / "checkpoints" / "resnet18-f37072fd.pth")
    with pytest.raises(WeightsChecksumError, match="f37072fd"):
        build_model("resnet18", 3, 2, "imagenet")


def test_imagenet_source_recorded_when_cache_file_matches(fake_weights, tmp_path, monkeypatch):
    # the real file name carries the real hash; emulate it with the fake file's own hash
    monkeypatch.setattr("cellcompare.deep.models.imagenet_weights_path", lambda: fake_weights)
    state, info = resolve_weights("imagenet")
    assert info == {"source": "imagenet", "path": str(fake_weights), "sha256": file_sha256(fake_weights)}
    assert set(state) == set(resnet18(weights=None).state_dict())


def test_smallcnn_refuses_pretrained_weights():
    with pytest.raises(ConfigError, match="smallcnn"):
        DeepConfig(arch="smallcnn", weights="imagenet")
    with pytest.raises(ConfigError, match="weights must be 'none'"):
        build_model("smallcnn", 3, 2, "some-file-0123abcd.pth")


def test_state_dict_of_other_model_is_rejected(tmp_path):
    raw = tmp_path / "raw.pth"
    torch.save(SmallCNN(3, 2).state_dict(), raw)
    path = raw.with_name(f"small-{file_sha256(raw)[:8]}.pth")
    raw.rename(path)
    with pytest.raises(WeightsChecksumError, match="do not fit"):
        build_model("resnet18", 3, 2, str(path))
