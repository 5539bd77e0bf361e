"""One validation pass before any work: every model's params, the weights, a --weights file."""

import json
import logging

import pytest
import torch

from cellcompare.classical import ClassicalConfig
from cellcompare.classical.estimator import check_params
from cellcompare.cli import main
from cellcompare.comparison import load_config, run
from cellcompare.comparison.config import CompareConfig, ModelSpec, check_models, with_weights
from cellcompare.config import ConfigError, UnknownKeyError
from cellcompare.deep import WeightsChecksumError, WeightsUnavailableError
from cellcompare.deep.models import file_sha256


@pytest.fixture
def empty_hub(monkeypatch, tmp_path):
    """A torch hub cache without torchvision's ImageNet file (this machine cannot download)."""
    hub = tmp_path / "hub"
    hub.mkdir()
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(hub))
    return hub


def _config_file(tmp_path, models):
    config = {"dataset": {"path": str(tmp_path / "data"), "layout": "rxrx1",
                          "synth": {"classes": 2, "per_class": 3, "size": 64, "plates": 3}},
              "features": {"preset": "minimal"}, "models": models, "folds": {"n_splits": 3},
              "output": str(tmp_path / "results")}
    path = tmp_path / "run.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


@pytest.mark.parametrize("models, key", [
    (["svm", {"name": "xgboost", "params": {"max_dept": 3}}], "models[1].params.max_dept"),
    (["svm", {"name": "smallcnn", "params": {"weights": "none", "epoch": 3}}], "models[1].params.epoch"),
    ([{"name": "linear_svm", "C": 1, "kernal": "rbf"}], "models[0].params.kernal"),
    ([{"name": "xgboost", "model_params": {"max_dept": 3}}], "models[0].params.model_params.max_dept"),
])
def test_a_misspelled_param_is_refused_when_the_config_is_read(tmp_path, models, key):
    path = _config_file(tmp_path, models)
    with pytest.raises(UnknownKeyError) as info:
        load_config(path)
    assert info.value.key == key and info.value.source == str(path)
    assert str(info.value).startswith(f"{path}: unknown key '{key}'")


def test_the_cli_stops_on_a_typo_before_any_work(tmp_path, caplog):
    path = _config_file(tmp_path, ["svm", {"name": "xgboost", "params": {"max_dept": 3}}])
    caplog.set_level(logging.ERROR)
    assert main(["compare", "--config", str(path)]) == 2
    assert f"{path}: unknown key 'models[1].params.max_dept'" in caplog.text
    assert "TypeError" not in caplog.text
    assert not (tmp_path / "data").exists() and not (tmp_path / "results").exists()


def test_a_config_built_in_code_is_checked_before_the_data_are_written(tmp_path):
    config = load_config(_config_file(tmp_path, ["svm"]))
    bad = config.replace(models=(ModelSpec("svm"), ModelSpec("smallcnn", "cnn", params={"epoch": 1})))
    with pytest.raises(UnknownKeyError, match=r"models\[1\]\.params\.epoch"):
        run(bad)
    assert not (tmp_path / "data").exists() and not (tmp_path / "results").exists()


def test_missing_imagenet_weights_are_found_when_the_config_is_read(tmp_path, empty_hub):
    path = _config_file(tmp_path, ["svm", {"name": "resnet18", "params": {"weights": "imagenet"}}])
    with pytest.raises(WeightsUnavailableError) as info:
        load_config(path)
    message = str(info.value)
    assert message.startswith(f"{path}: models[1].params.weights: ImageNet weights")
    assert str(empty_hub / "checkpoints" / "resnet18-f37072fd.pth") in message
    assert "--weights PATH" in message and "weights: none" in message


def test_auto_weights_without_the_cache_pass_the_check(tmp_path, empty_hub):
    config = load_config(_config_file(tmp_path, [{"name": "resnet18", "params": {"weights": "auto"}}]))
    assert config.models[0].params == {"weights": "auto"}  # resolved when fitted, said in notes


def _weights_file(folder, content=b"not really a state dict"):
    folder.mkdir(exist_ok=True)
    draft = folder / "draft.pth"
    draft.write_bytes(content)
    named = folder / f"resnet18-{file_sha256(draft)[:8]}.pth"
    draft.rename(named)
    return named


def test_weights_option_points_imagenet_models_at_a_file(tmp_path, empty_hub):
    weights = _weights_file(tmp_path / "w")
    config = CompareConfig(models=(ModelSpec("resnet18", "auto"),
                                   ModelSpec("resnet18", "imagenet", params={"weights": "imagenet"}),
                                   ModelSpec("resnet18", "scratch", params={"weights": "none"}),
                                   ModelSpec("smallcnn", "cnn", params={"weights": "none"}),
                                   ModelSpec("svm", "svm")))
    chosen = with_weights(config, weights)
    assert [m.params.get("weights") for m in chosen.models] == [str(weights), str(weights), "none",
                                                                 "none", None]
    check_models(chosen.models)  # the file exists and its content matches its name
    with pytest.raises(ConfigError, match="no model asks for ImageNet weights"):
        with_weights(config.replace(models=config.models[2:]), weights)


def test_weights_option_checks_the_file_before_any_work(tmp_path, empty_hub, caplog):
    path = _config_file(tmp_path, ["svm", {"name": "resnet18", "params": {"epochs": 1}}])
    caplog.set_level(logging.ERROR)
    corrupt = _weights_file(tmp_path / "w")
    corrupt.write_bytes(b"changed after naming")
    assert main(["compare", "--config", str(path), "--weights", str(corrupt)]) == 2
    assert "WeightsChecksumError" in caplog.text and "models[1].params.weights" in caplog.text
    assert main(["compare", "--config", str(path), "--weights", str(tmp_path / "absent.pth")]) == 2
    assert f"weight file {tmp_path / 'absent.pth'} does not exist" in caplog.text
    assert not (tmp_path / "data").exists() and not (tmp_path / "results").exists()


def test_weights_checksum_error_names_the_model(tmp_path, empty_hub):
    corrupt = _weights_file(tmp_path / "w")
    corrupt.write_bytes(b"changed after naming")
    path = _config_file(tmp_path, [{"name": "resnet18", "params": {"weights": str(corrupt)}}])
    with pytest.raises(WeightsChecksumError, match=r"models\[0\]\.params\.weights: weight file"):
        load_config(path)


def test_classical_config_checks_its_params():
    with pytest.raises(UnknownKeyError, match=r"params\.max_dept"):
        ClassicalConfig.from_dict({"name": "xgboost", "params": {"max_dept": 4}})
    check_params("svm", {"tol": 1e-3, "C": 10, "calibration_folds": 2, "many_classes": 10})
    with pytest.raises(UnknownKeyError, match=r"params\.kernel"):  # set by the model itself
        check_params("linear_svm", {"kernel": "rbf"})
