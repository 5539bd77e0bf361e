"""Precise BatchNorm: running statistics re-estimated from training batches, RNG untouched."""

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from cellcompare.deep.train import format_epoch, recalibrate_batchnorm


def _model_and_loader():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 1), nn.BatchNorm2d(2))
    images = torch.randn(12, 1, 5, 5) * 3 + 7
    loader = DataLoader(TensorDataset(images, torch.zeros(12, dtype=torch.long)), batch_size=4,
                        shuffle=True, generator=torch.Generator().manual_seed(1))
    return model, loader, images


def test_running_stats_become_the_average_of_batch_statistics():
    model, loader, images = _model_and_loader()
    bn = model[1]
    assert torch.allclose(bn.running_mean, torch.zeros(2))  # fresh layer: far from the data
    used = recalibrate_batchnorm(model.eval(), loader, torch.device("cpu"), amp=False, max_batches=10)
    assert used == 3
    with torch.no_grad():
        features = model[0](images)
    # equal-sized batches: the average of batch means is the mean over all images
    torch.testing.assert_close(bn.running_mean, features.mean(dim=(0, 2, 3)), rtol=1e-5, atol=1e-5)
    assert bn.momentum == 0.1 and not model.training  # settings and mode restored


def test_random_streams_are_restored():
    model, loader, _ = _model_and_loader()
    torch.manual_seed(5)
    expected = torch.rand(3)
    expected_order = torch.randperm(12, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(5)
    loader.generator.manual_seed(1)
    recalibrate_batchnorm(model, loader, torch.device("cpu"), amp=False, max_batches=2)
    torch.testing.assert_close(torch.rand(3), expected)
    torch.testing.assert_close(torch.randperm(12, generator=loader.generator), expected_order)


def test_models_without_batchnorm_are_left_alone():
    model = nn.Sequential(nn.Conv2d(1, 2, 1))
    _, loader, _ = _model_and_loader()
    assert recalibrate_batchnorm(model, loader, torch.device("cpu"), amp=False, max_batches=5) == 0


RECORD = {"epoch": 3, "lr": 0.003, "train_loss": 1.37226, "train_accuracy": 0.5, "images_per_s": 41.2,
          "val_loss": 2.06126, "val_accuracy": 0.2}


def test_epoch_line_with_validation():
    assert format_epoch(RECORD, 15) == (
        "epoch  3/15  lr 3.0e-03  loss 1.372  acc 0.50  val_loss 2.061  val_acc 0.20  41 img/s")


def test_epoch_line_without_validation_leaves_val_fields_out():
    record = {k: v for k, v in RECORD.items() if not k.startswith("val_")}
    record["images_per_s"] = 2.345  # slow runs keep one decimal rather than rounding to "2"
    assert format_epoch(record, 9) == "epoch 3/9  lr 3.0e-03  loss 1.372  acc 0.50  2.3 img/s"


def test_epoch_line_leaves_the_record_unchanged():
    record = dict(RECORD)
    format_epoch(record, 15)
    assert record == RECORD
