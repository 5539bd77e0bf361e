"""DeepClassifier end to end on tiny synthetic disk/ring images (CPU, 32 px, 1–2 epochs)."""

import numpy as np
import pytest
import torch

from cellcompare.config import UnknownKeyError
from cellcompare.deep import (
    ConfigError,
    DeepClassifier,
    DeepConfig,
    ImageInputError,
    NotFittedError,
    inner_split,
)

torch.set_num_threads(2)


def disks_and_rings(n: int, seed: int, channels: int = 2, size: int = 32):
    """Class ``disk``: a filled bright disk; class ``ring``: a bright ring of the same radius."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images, labels = [], []
    for i in range(n):
        cy, cx = rng.uniform(size / 2 - 4, size / 2 + 4, 2)
        r = np.hypot(yy - cy, xx - cx)
        ring = i % 2 == 1
        mask = (r < 9) & (r > 6) if ring else r < 9
        image = np.stack([mask * rng.uniform(0.6, 1.0) + rng.normal(0, 0.05, mask.shape)
                          for _ in range(channels)])
        images.append(image.astype(np.float32))
        labels.append("ring" if ring else "disk")
    return images, np.array(labels)


def small_config(**changes) -> DeepConfig:
    base = dict(arch="smallcnn", weights="none", image_size=32, epochs=2, batch_size=8, lr=1e-2,
                val_fraction=0.25, progress=False, seed=0)
    base.update(changes)
    return DeepConfig(**base)


@pytest.fixture(scope="module")
def data():
    return disks_and_rings(32, seed=0), disks_and_rings(20, seed=1)


@pytest.fixture(scope="module")
def fitted(data):
    (x, y), _ = data
    return DeepClassifier(small_config()).fit(x, y)


def test_two_epochs_learn_disk_versus_ring(fitted, data):
    _, (x_test, y_test) = data
    proba = fitted.predict_proba(x_test)
    assert proba.shape == (20, 2)
    np.testing.assert_allclose(proba.sum(1), 1.0, rtol=1e-5)
    assert list(fitted.classes_) == ["disk", "ring"]
    accuracy = (fitted.classes_[proba.argmax(1)] == y_test).mean()
    assert accuracy >= 0.8  # chance is 0.5
    assert len(fitted.history_) == 2 and "val_loss" in fitted.history_[0]


def test_save_load_round_trip_identical(fitted, data, tmp_path):
    _, (x_test, _) = data
    fitted.save(tmp_path / "model")
    loaded = DeepClassifier.load(tmp_path / "model")
    np.testing.assert_array_equal(loaded.predict_proba(x_test), fitted.predict_proba(x_test))
    assert list(loaded.classes_) == list(fitted.classes_)
    assert loaded.weights_info_ == {"source": "none", "path": None, "sha256": None}
    assert loaded.config == fitted.config


def test_resnet18_six_channels_round_trip_with_tta(tmp_path):
    x, y = disks_and_rings(8, seed=2, channels=6)
    clf = DeepClassifier(small_config(arch="resnet18", epochs=1, val_fraction=0.0, tta="d4")).fit(x, y)
    proba = clf.predict_proba(x[:3])
    assert proba.shape == (3, 2)
    clf.save(tmp_path)
    np.testing.assert_array_equal(DeepClassifier.load(tmp_path).predict_proba(x[:3]), proba)


def test_same_seed_same_model(data):
    (x, y), (x_test, _) = data
    config = small_config(epochs=1)
    a = DeepClassifier(config).fit(x, y).predict_proba(x_test)
    b = DeepClassifier(config).fit(x, y).predict_proba(x_test)
    c = DeepClassifier(config.replace(seed=1)).fit(x, y).predict_proba(x_test)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_checkpoint_resume_continues_after_last_epoch(data, tmp_path):
    (x, y), (x_test, _) = data
    config = small_config(checkpoint_dir=str(tmp_path / "ckpt"))
    first = DeepClassifier(config).fit(x, y)
    assert (tmp_path / "ckpt" / "last.pt").is_file()
    resumed = DeepClassifier(config)
    resumed.fit(x, y)  # all epochs already done: nothing is retrained
    assert resumed.history_ == first.history_
    np.testing.assert_array_equal(resumed.predict_proba(x_test), first.predict_proba(x_test))


def test_checkpoint_from_other_run_is_refused(data, tmp_path):
    (x, y), _ = data
    DeepClassifier(small_config(epochs=1, checkpoint_dir=str(tmp_path))).fit(x, y)
    with pytest.raises(ValueError, match="different run"):
        DeepClassifier(small_config(epochs=1, lr=0.05, checkpoint_dir=str(tmp_path))).fit(x, y)


def test_tuning_picks_from_search_space(data):
    (x, y), _ = data
    config = DeepConfig.from_dict({**small_config().to_dict(), "tune": {"enabled": True, "n_trials": 2, "epochs": 1,
                                                                "batch_sizes": [4, 8]}})
    clf = DeepClassifier(config).fit(x, y)
    assert len(clf.tuning_trials_) == 2
    assert 1e-3 <= clf.best_params_["lr"] <= 1e-1 and clf.best_params_["batch_size"] in (4, 8)
    best = min(clf.tuning_trials_, key=lambda t: t["val_loss"])
    assert clf.best_params_ == {"lr": best["lr"], "batch_size": best["batch_size"]}


def test_top_k_and_predict(fitted, data):
    _, (x_test, _) = data
    top = fitted.top_k(x_test, k=2)
    assert top.shape == (20, 2)
    np.testing.assert_array_equal(top[:, 0], fitted.predict(x_test))
    assert all(set(row) == {"disk", "ring"} for row in top)


def test_inner_split_is_stratified():
    y = np.array([0] * 8 + [1] * 4)
    train, val = inner_split(y, 0.25, seed=0)
    assert sorted(np.bincount(y[val])) == [1, 2] and len(set(train) & set(val)) == 0
    assert len(train) + len(val) == 12
    assert len(inner_split(np.array([0, 1, 1]), 0.3, seed=0)[1]) == 0  # too small: no validation


def test_input_errors():
    x, y = disks_and_rings(4, seed=0)
    with pytest.raises(ImageInputError, match="4 images but 3 labels"):
        DeepClassifier(small_config()).fit(x, y[:3])
    with pytest.raises(ImageInputError, match=r"expected shape \(C, H, W\)"):
        DeepClassifier(small_config()).fit([im[0] for im in x], y)
    with pytest.raises(NotFittedError):
        DeepClassifier(small_config()).predict_proba(x)


def test_config_from_dict_rejects_unknown_keys():
    config = DeepConfig.from_dict({"arch": "smallcnn", "weights": "none", "augment": {"angle_step": 30}})
    assert config.augment.angle_step == 30 and config.augment.flips
    with pytest.raises(UnknownKeyError, match="'augment.rotate'"):
        DeepConfig.from_dict({"augment": {"rotate": True}})
    with pytest.raises(ConfigError, match="optimizer"):
        DeepConfig(optimizer="adam")


def test_interrupted_run_resumes_to_the_same_model(data, tmp_path, monkeypatch):
    from cellcompare.deep import train
    (x, y), (x_test, _) = data
    reference = DeepClassifier(small_config()).fit(x, y)
    config = small_config(checkpoint_dir=str(tmp_path))
    original = train.train_one_epoch

    def crash_in_epoch_two(*args, epoch, **kwargs):
        if epoch == 2:
            raise KeyboardInterrupt
        return original(*args, epoch=epoch, **kwargs)

    monkeypatch.setattr(train, "train_one_epoch", crash_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        DeepClassifier(config).fit(x, y)
    monkeypatch.setattr(train, "train_one_epoch", original)
    resumed = DeepClassifier(config).fit(x, y)
    assert [r["train_loss"] for r in resumed.history_] == [r["train_loss"] for r in reference.history_]
    np.testing.assert_array_equal(resumed.predict_proba(x_test), reference.predict_proba(x_test))


def test_sample_images_read_samples_on_access_with_the_channel_subset():
    from types import SimpleNamespace

    from cellcompare.deep import SampleImages

    reads = []

    class FakeDataset:
        ids = ("a", "b", "c")

        def get(self, sample_id):
            reads.append(sample_id)
            value = self.ids.index(sample_id)
            return SimpleNamespace(id=sample_id, float_image=np.stack(
                [np.full((4, 4), value + 10 * c, dtype=np.float32) for c in range(3)]))

    view = SampleImages(FakeDataset(), ["c", "a"], channels=[2, 0])
    assert len(view) == 2 and reads == []
    first = view[0]
    assert reads == ["c"] and first.shape == (2, 4, 4)
    assert (first[0, 0, 0], first[1, 0, 0]) == (22.0, 2.0)
    assert len(SampleImages(FakeDataset())) == 3


@pytest.mark.parametrize("changes", [{"optimizer": "sgd", "label_smoothing": 0.1}, {"optimizer": "adamw"}])
def test_optimizers_and_label_smoothing_train(data, changes):
    (x, y), _ = data
    clf = DeepClassifier(small_config(epochs=1, **changes)).fit(x, y)
    assert np.isfinite(clf.history_[0]["train_loss"]) and np.isfinite(clf.history_[0]["val_loss"])


def test_warmup_then_cosine_schedule():
    from cellcompare.deep.train import warmup_cosine

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = warmup_cosine(optimizer, warmup_steps=3, total_steps=13)
    lrs = []
    for _ in range(13):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    np.testing.assert_allclose(lrs[:4], [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(lrs[8], 0.5, atol=1e-9)  # half way through the cosine
    assert all(a >= b for a, b in zip(lrs[3:], lrs[4:]))


def test_fit_predict_on_real_channelset_samples(example_fly):
    """datasets.Sample.float_image read lazily through SampleImages (3 ExampleFly sites, D/F/R)."""
    from cellcompare.datasets import open_dataset
    from cellcompare.deep import SampleImages

    ds = open_dataset(example_fly, layout="channelsets")
    images = SampleImages(ds)
    clf = DeepClassifier(small_config(epochs=1, val_fraction=0.0)).fit(images, ["a", "b", "a"][:len(ds)])
    expected_mean = np.mean([ds[i].float_image.mean(axis=(1, 2)) for i in range(len(ds))], axis=0)
    np.testing.assert_allclose(clf.channel_mean_, expected_mean, rtol=1e-4)
    proba = clf.predict_proba(images)
    assert proba.shape == (len(ds), 2) and clf.n_channels_ == 3


def test_config_from_yaml(tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text("arch: smallcnn\nweights: none\ntune:\n  enabled: true\n  batch_sizes: [32, 64]\n")
    config = DeepConfig.from_yaml(path)
    assert config.arch == "smallcnn" and config.tune.batch_sizes == (32, 64) and config.tune.enabled
    assert DeepConfig.from_dict(config.to_dict()) == config


def test_missing_imagenet_weights_fail_before_reading_images(tmp_path, monkeypatch):
    from cellcompare.deep import WeightsUnavailableError

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    reads = []

    class Lazy:
        def __len__(self):
            return 4

        def __getitem__(self, i):
            reads.append(i)
            return np.zeros((2, 8, 8), dtype=np.float32)

    with pytest.raises(WeightsUnavailableError, match="weights: none"):
        DeepClassifier(small_config(arch="resnet18", weights="imagenet")).fit(Lazy(), ["a", "b"] * 2)
    assert reads == [0]  # only the channel count was probed
