"""Self-supervised pretraining (``weights: ssl``, ``deep.ssl``): the loss, the cache, fine-tuning
from the backbone, and the configuration."""

import hashlib
import logging
import math

import numpy as np
import pytest
import torch

from cellcompare.deep import ConfigError, DeepClassifier, DeepConfig
from cellcompare.deep.config import SSLConfig
from cellcompare.deep.ssl import backbone, nt_xent, pretrain


def _images(n=16, seed=0):
    """Bright and dim 1x16x16 images with a blob: two classes a network can tell apart."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        image = rng.random((1, 16, 16), dtype=np.float32) * 0.2
        image[0, 4:12, 4:12] += 0.8 if i % 2 else 0.3
        out.append(image)
    return out, np.array(["bright" if i % 2 else "dim" for i in range(n)])


def _config(**ssl):
    return DeepConfig.from_dict({"arch": "smallcnn", "weights": "ssl", "image_size": 16, "epochs": 2,
                                 "batch_size": 8, "val_fraction": 0.0, "device": "cpu", "amp": False,
                                 "progress": False, "ssl": {"epochs": 2, **ssl}})


def test_nt_xent_is_the_cross_entropy_of_finding_the_partner():
    z1 = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    z2 = torch.tensor([[1.0, 1.0], [0.0, 1.0]])                 # partner of row 0 at 45 degrees
    z = torch.nn.functional.normalize(torch.cat([z1, z2]), dim=1)
    sim = (z @ z.T / 0.5).tolist()
    expected = 0.0
    for i, j in [(0, 2), (1, 3), (2, 0), (3, 1)]:
        others = [math.exp(sim[i][k]) for k in range(4) if k != i]
        expected -= math.log(math.exp(sim[i][j]) / sum(others))
    assert float(nt_xent(z1, z2, 0.5)) == pytest.approx(expected / 4, rel=1e-6)
    assert float(nt_xent(z1, z1, 0.1)) < float(nt_xent(z1, z1.flip(0), 0.1))  # partners found


def test_pretraining_records_its_losses_and_a_rerun_reads_the_cache(tmp_path, caplog):
    images, _ = _images()
    pre = pretrain(images, _config(), key="fold0", folder=tmp_path)
    assert pre.info["images"] == 16 and len(pre.info["loss"]) == 2
    assert pre.info["views_per_s"] == pytest.approx(2 * pre.info["images_per_s"])
    assert all(np.isfinite(pre.info["loss"])) and pre.info["images_per_s"] > 0
    assert set(pre.state_dict) and not any(k.startswith("fc.") for k in pre.state_dict)
    (folder,) = tmp_path.iterdir()
    assert pre.info["folder"] == str(folder)
    assert pre.info["sha256"] == hashlib.sha256((folder / "backbone.pt").read_bytes()).hexdigest()
    with caplog.at_level(logging.INFO, logger="cellcompare.deep.ssl"):
        again = pretrain(images, _config(), key="fold0", folder=tmp_path)
    assert any("reusing the SSL backbone" in r.getMessage() for r in caplog.records)
    assert not any(r.getMessage().startswith("ssl epoch") for r in caplog.records)  # no training
    assert again.info == pre.info                                       # same timing: the stored run
    assert all(torch.equal(again.state_dict[k], pre.state_dict[k]) for k in pre.state_dict)
    np.testing.assert_allclose(again.channel_mean, pre.channel_mean)
    pretrain(images, _config(), key="fold1", folder=tmp_path)          # another fold: its own
    pretrain(images, _config(temperature=0.5), key="fold0", folder=tmp_path)  # other settings
    assert len(list(tmp_path.iterdir())) == 3


def test_the_backbone_loads_into_the_architecture_with_a_new_head():
    images, _ = _images(8)
    pre = pretrain(images, _config())
    model = backbone(pre, 3)
    assert model.fc.out_features == 3
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in pre.state_dict.items())


def test_fine_tuning_from_ssl_saves_and_loads_with_identical_probabilities(tmp_path):
    images, y = _images()
    clf = DeepClassifier(_config()).fit(images, y, ssl_key="k", ssl_folder=tmp_path / "ssl")
    info = clf.weights_info_
    assert info["source"] == "ssl" and info["images"] == 16 and info["unlabeled"] == 0
    assert info["sha256"] == pretrain(images, _config(), key="k", folder=tmp_path / "ssl").info["sha256"]
    proba = clf.predict_proba(images)
    clf.save(tmp_path / "model")
    np.testing.assert_array_equal(DeepClassifier.load(tmp_path / "model").predict_proba(images), proba)


def test_transductive_pretraining_counts_the_unlabeled_images(tmp_path):
    images, y = _images()
    extra, _ = _images(6, seed=1)
    clf = DeepClassifier(_config(use_test_images=True)).fit(images, y, unlabeled=extra)
    assert clf.weights_info_["images"] == 22 and clf.weights_info_["unlabeled"] == 6
    assert clf.weights_info_["use_test_images"] is True
    plain = DeepClassifier(_config()).fit(images, y, unlabeled=extra)  # not asked: not read
    assert plain.weights_info_["images"] == 16


def test_bad_ssl_settings_are_refused():
    with pytest.raises(ConfigError, match="ssl.temperature"):
        SSLConfig(temperature=0)
    with pytest.raises(ConfigError, match="ssl.batch_size"):
        SSLConfig(batch_size=1)
    with pytest.raises(ConfigError, match="ssl.crop_scale"):
        SSLConfig(crop_scale=1.5)
    from cellcompare.config import UnknownKeyError

    with pytest.raises(UnknownKeyError, match="ssl.epoch"):
        DeepConfig.from_dict({"weights": "ssl", "ssl": {"epoch": 3}})
    with pytest.raises(ConfigError, match="at least 2 images"):
        pretrain(_images(1)[0], _config())


def test_an_uncached_run_records_the_sha256_of_its_state_too():
    images, _ = _images(8)
    one, two = pretrain(images, _config()), pretrain(images, _config())
    assert len(one.info["sha256"]) == 64 and one.info["sha256"] == two.info["sha256"]  # seeded: repeatable
    assert "folder" not in one.info


def test_a_corrupted_cached_backbone_is_refused(tmp_path):
    from cellcompare.deep import WeightsChecksumError

    images, _ = _images(8)
    pretrain(images, _config(), key="k", folder=tmp_path)
    (folder,) = tmp_path.iterdir()
    (folder / "backbone.pt").write_bytes(b"not a state")
    with pytest.raises(WeightsChecksumError, match="backbone.pt: sha256"):
        pretrain(images, _config(), key="k", folder=tmp_path)


def test_ssl_weights_name_no_file_to_load():
    from cellcompare.deep.models import build_model, resolve_weights, weights_for

    assert weights_for("ssl", "resnet18") == weights_for("ssl", "smallcnn") == "ssl"
    for call in (lambda: resolve_weights("ssl"), lambda: build_model("smallcnn", 1, 2, "ssl")):
        with pytest.raises(ConfigError, match="deep.ssl.backbone"):
            call()
    assert DeepConfig.from_dict({"arch": "smallcnn", "weights": "ssl"}).ssl.temperature == 0.2


def test_the_report_says_where_the_backbone_was_pretrained():
    from cellcompare.reports.sections import weights_statement

    inductive = weights_statement({"source": "ssl", "epochs": 2, "images": 16, "sha256": "f" * 64})
    assert "self-supervised (SimCLR, 2 epochs) on this fold's training images only; 16 images" in inductive
    assert "transductive" not in inductive
    transductive = weights_statement({"source": "ssl", "epochs": 2, "images": 22, "use_test_images": True})
    assert "also on its test images (transductive: the test images were seen, unlabeled, in pretraining)" \
        in transductive


@pytest.mark.parametrize("transductive", [False, True])
def test_the_deep_adapter_pretrains_per_fold_and_reads_the_others_only_when_asked(tmp_path, transductive):
    from cellcompare.comparison.adapters import SSLInputs, build_adapter
    from tests.test_deep_cells import TINY, _fold
    from tests.test_deep_crops import _Dataset, _site

    images = {"a1": _site([(16, 16), (40, 44)]), "a2": _site([(20, 40)]),
              "b1": _site([(30, 30), (12, 48)], radius=8), "b2": _site([(44, 20)], radius=8),
              "t1": _site([(24, 24)])}
    ssl = SSLInputs(tmp_path / "ssl", "data-1", tuple(images), {k: "p1" for k in images})
    params = {**TINY, "normalize": "none", "weights": "ssl",
              "ssl": {"epochs": 1, "batch_size": 2, "use_test_images": transductive}}
    model = build_adapter("smallcnn", params=params, seed=0, ssl=ssl)
    train = _fold(_Dataset(images), ["a1", "a2", "b1", "b2"], ["a", "a", "b", "b"], ["p1"] * 4)
    model.fit(train)
    assert model.weights["source"] == "ssl" and model.weights["key"] == ssl.key(["b2", "b1", "a2", "a1"])
    assert model.weights["images"] == 4 + transductive and model.weights["unlabeled"] == int(transductive)
    assert model.weights["use_test_images"] is transductive
    (folder,) = (tmp_path / "ssl").iterdir()
    assert model.weights["folder"] == str(folder)
    assert model.predict_proba(_fold(_Dataset(images), ["t1"], ["a"], ["p1"])).shape == (1, 2)


def test_cell_crops_pretrain_on_the_kept_crops_and_the_unlabeled_ones_bounded_alike():
    from tests.test_deep_cells import _cell_inputs

    config = _config(use_test_images=True).replace(image_size=12, cells_per_image=1, normalize="group")
    y = ["a", "a", "a", "b", "b", "b"]
    clf = DeepClassifier(config).fit_cells(_cell_inputs(), y, unlabeled=_cell_inputs())
    assert clf.weights_info_["images"] == 8 and clf.weights_info_["unlabeled"] == 4  # 1 crop of 4 images each
    plain = DeepClassifier(config.replace(weights="none", ssl=SSLConfig())).fit_cells(
        _cell_inputs(), y, unlabeled=_cell_inputs())
    assert plain.weights_info_["source"] == "none"
