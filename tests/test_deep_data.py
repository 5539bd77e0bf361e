"""deep.augment and deep.data on tiny synthetic tensors."""

import numpy as np
import pytest
import torch

from cellcompare.deep import AugmentConfig, ImageInputError
from cellcompare.deep.augment import (
    ChannelJitter,
    MaskBackground,
    RandomRot90,
    RandomStepRotation,
    build_augmentation,
    foreground_mask,
    otsu_threshold,
    tta_views,
)
from cellcompare.deep.data import ImageTensorDataset, channel_stats, resize_crop

torch.set_num_threads(2)


def disk_image(channels: int = 3, size: int = 32, radius: float = 8.0, seed: int = 0) -> torch.Tensor:
    """Bright disk (0.8–1.0) on a dim background (0.0–0.1), ``(C, size, size)`` float32."""
    gen = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    disk = ((yy - size / 2) ** 2 + (xx - size / 2) ** 2) < radius ** 2
    background = torch.rand(channels, size, size, generator=gen) * 0.1
    foreground = 0.8 + torch.rand(channels, size, size, generator=gen) * 0.2
    return torch.where(disk, foreground, background), disk


@pytest.mark.parametrize("channels", [1, 3, 6])
@pytest.mark.parametrize("transform", [MaskBackground(1.0), RandomRot90(), RandomStepRotation(45.0),
                                       ChannelJitter(0.2, 0.2),
                                       build_augmentation(AugmentConfig(mask_background_p=0.5))],
                         ids=["mask", "rot90", "rot45", "jitter", "composed"])
def test_augmentation_preserves_shape_and_dtype(channels, transform):
    torch.manual_seed(0)
    image, _ = disk_image(channels)
    for _ in range(4):
        out = transform(image)
        assert out.shape == image.shape and out.dtype == torch.float32
        assert torch.isfinite(out).all()


def test_masking_zeroes_background_and_keeps_foreground():
    image, disk = disk_image(6)
    out = MaskBackground(1.0)(image)
    assert torch.count_nonzero(out[:, ~disk]) == 0
    assert torch.equal(out[:, disk], image[:, disk])


def test_foreground_mask_matches_disk():
    image, disk = disk_image(2, size=40, radius=10)
    assert torch.equal(foreground_mask(image), disk)


def test_otsu_threshold_separates_two_levels():
    values = torch.cat([torch.full((100,), 0.2), torch.full((50,), 0.7)])
    assert 0.2 < otsu_threshold(values) < 0.7


def test_rot90_is_one_of_four_rotations():
    torch.manual_seed(1)
    image = torch.arange(2 * 4 * 4, dtype=torch.float32).reshape(2, 4, 4)
    rotations = [torch.rot90(image, k, dims=(-2, -1)) for k in range(4)]
    seen = set()
    for _ in range(20):
        out = RandomRot90()(image)
        seen.add(next(k for k, r in enumerate(rotations) if torch.equal(out, r)))
    assert seen == {0, 1, 2, 3}


def test_jitter_scales_each_channel_independently():
    torch.manual_seed(0)
    image = torch.ones(6, 8, 8)
    out = ChannelJitter(brightness=0.5, contrast=0.0)(image)
    per_channel = out.mean(dim=(1, 2))
    assert torch.allclose(out, per_channel.view(-1, 1, 1).expand_as(out))
    assert len(torch.unique(per_channel)) == 6 and ((per_channel >= 0.5) & (per_channel <= 1.5)).all()


def test_augmentation_off_when_disabled():
    assert build_augmentation(AugmentConfig(enabled=False)) is None


@pytest.mark.parametrize("mode,count", [("none", 1), ("flip", 3), ("rot90", 4), ("d4", 8)])
def test_tta_views(mode, count):
    batch = torch.rand(2, 3, 8, 8)
    views = tta_views(batch, mode)
    assert len(views) == count and all(v.shape == batch.shape for v in views)
    assert torch.equal(views[0], batch)


def test_channel_stats_use_only_given_indices():
    rng = np.random.default_rng(0)
    images = [rng.random((3, 5, 5), dtype=np.float32) for _ in range(4)]
    images[3] += 100  # an outlier outside the training indices must not count
    mean, std = channel_stats(images, [0, 1, 2], progress=False)
    stacked = np.stack(images[:3]).transpose(1, 0, 2, 3).reshape(3, -1)
    np.testing.assert_allclose(mean, stacked.mean(1), rtol=1e-5)
    np.testing.assert_allclose(std, stacked.std(1), rtol=1e-4)


def test_resize_crop_to_square():
    out = resize_crop(torch.rand(2, 64, 96), 32)
    assert out.shape == (2, 32, 32)


def test_dataset_normalises_and_labels():
    images = [np.full((2, 16, 16), v, dtype=np.float32) for v in (1.0, 3.0)]
    ds = ImageTensorDataset(images, np.array([0, 1]), mean=np.array([2.0, 2.0]), std=np.array([1.0, 0.5]),
                      image_size=8)
    image, label = ds[1]
    assert image.shape == (2, 8, 8) and label == 1
    torch.testing.assert_close(image[:, 0, 0], torch.tensor([1.0, 2.0]))


def test_dataset_reads_lazily_and_checks_channels():
    reads = []

    class Lazy:
        def __len__(self):
            return 3

        def __getitem__(self, i):
            reads.append(i)
            return np.zeros((4 if i == 2 else 3, 8, 8), dtype=np.uint8)

    ds = ImageTensorDataset(Lazy(), None, mean=np.zeros(3), std=np.ones(3), image_size=8)
    assert reads == []
    assert ds[0][1] == -1 and reads == [0]
    with pytest.raises(ImageInputError, match="image 2: expected 3 channels, found 4"):
        ds[2]
