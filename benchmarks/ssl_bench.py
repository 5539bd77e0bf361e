"""SimCLR pretraining throughput (``deep.ssl.pretrain``) on CPU, and its projected GPU cost at RxRx1 size.

Each case runs ``pretrain`` (the real loop: two augmented views per image through the loader,
ResNet18 backbone + projection head, NT-Xent, AdamW) for one epoch on ``--n-images`` random
images after a one-step warm-up run of the same shape (thread pools, allocator, first-call
kernels; not timed), and prints images/s (pretraining images, each in two views) and views/s
(forward-backward passes, what a training throughput counts). The reference, measured in
the same run: supervised ResNet18 train steps on in-memory tensors with as many images per
step as the SimCLR step has views; the ratio is the SSL overhead (loader, augmentation,
projection head, loss).

The GPU projection: RxRx1 has 125,510 sites; ``--epochs`` passes of 2 views each cost
``2 * sites * epochs / gpu_views_per_s`` seconds. ``--gpu-img-s`` defaults to the H100
ResNet18 training ceiling of issue 31 at 6 x 256² (``gpu_check.H100_REFERENCE["eager"]``, a
reference figure, not measured on this project's machines) times ``--gpu-efficiency`` (the
end to end / ceiling goal, 0.6), and is scaled by pixel area for ``--gpu-size``.

Example: ``python benchmarks/ssl_bench.py --threads 2`` (about 2 min on 2 cores).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch

from cellcompare.deep.config import DeepConfig
from cellcompare.deep.models import build_model
from cellcompare.deep.ssl import pretrain

sys.path.insert(0, str(Path(__file__).resolve().parent))
from deep_bench import train_steps  # noqa: E402  (the sibling benchmark's timed supervised step)
from gpu_check import GOAL_RATIO, H100_REFERENCE  # noqa: E402  (the one copy of the H100 reference)

RXRX1_SITES = 125_510
REFERENCE_SIZE = 256


def _config(size: int, batch: int, epochs: int, workers: int) -> DeepConfig:
    return DeepConfig.from_dict({"arch": "resnet18", "weights": "ssl", "image_size": size, "batch_size": batch,
                                 "device": "cpu", "amp": False, "progress": False,
                                 "num_workers": workers, "ssl": {"epochs": epochs}})


def measure(channels: int, size: int, n_images: int, batch: int, workers: int) -> dict:
    """One warm-up step, then one timed epoch of ``pretrain`` on ``n_images`` random images."""
    rng = np.random.default_rng(0)
    images = [rng.random((channels, size, size), dtype=np.float32) for _ in range(n_images)]
    pretrain(images[:batch], _config(size, batch, 1, workers))  # warm-up: one step, not timed
    start = time.perf_counter()
    pre = pretrain(images, _config(size, batch, 1, workers))
    wall = time.perf_counter() - start
    return {"input": f"{channels}x{size}x{size}", "images": n_images, "batch": batch,
            "steps": -(-n_images // batch), "images_per_s": pre.info["images_per_s"],
            "views_per_s": pre.info["views_per_s"], "loop_s": pre.info["seconds"], "wall_s": wall,
            "loss": pre.info["loss"][-1]}


def supervised(channels: int, size: int, batch: int, steps: int) -> float:
    """The reference: supervised ResNet18 train steps of ``batch`` tensors already in memory, img/s.

    Same network, same forward-backward count per step as a SimCLR step of ``batch // 2``
    images (two views each), without the loader, augmentation and projection head.
    """
    torch.manual_seed(0)
    model, _ = build_model("resnet18", channels, 2, "none")
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    images, labels = torch.rand(batch, channels, size, size), torch.arange(batch) % 2

    def batches():
        while True:
            yield images, labels

    return train_steps(model, optimizer, batches(), torch.device("cpu"), steps=steps, warmup=1, amp=False)


def project(gpu_img_s: float, size: int, epochs: int, sites: int = RXRX1_SITES) -> dict:
    """GPU hours for ``epochs`` of SimCLR on ``sites`` images of ``size``² (2 views each).

    Examples
    --------
    >>> p = project(1000.0, 256, 10, sites=1000)
    >>> p["views"], p["hours"] == 2 * 1000 * 10 / 1000 / 3600
    (20000, True)
    """
    views_per_s = gpu_img_s * (REFERENCE_SIZE / size) ** 2
    views = 2 * sites * epochs
    return {"sites": sites, "epochs": epochs, "size": size, "views": views, "views_per_s": views_per_s,
            "hours": views / views_per_s / 3600}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers (0: in the main process)")
    parser.add_argument("--crop-images", type=int, default=64, help="6x64x64 crops in the timed epoch")
    parser.add_argument("--site-images", type=int, default=32, help="6x128x128 images in the timed epoch")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=100, help="SSL epochs of the RxRx1 projection")
    parser.add_argument("--gpu-size", type=int, default=REFERENCE_SIZE, help="side of the projected GPU inputs")
    parser.add_argument("--gpu-efficiency", type=float, default=GOAL_RATIO,
                        help="end to end / ceiling assumed on the GPU")
    parser.add_argument("--gpu-img-s", type=float, default=None,
                        help="GPU training img/s at 6x256² (default: H100 eager ceiling x efficiency)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, {args.workers} workers; "
          "each case: one warm-up step (not timed), then one timed epoch")
    for channels, size, n in ((6, 64, args.crop_images), (6, 128, args.site_images)):
        r = measure(channels, size, n, args.batch_size, args.workers)
        print(f"{r['input']}: {r['images']} images, batch {r['batch']}, {r['steps']} steps: "
              f"{r['images_per_s']:.2f} images/s ({r['views_per_s']:.2f} views/s), loop {r['loop_s']:.1f} s, "
              f"loss {r['loss']:.3f}")
        ref = supervised(channels, size, 2 * r["batch"], r["steps"])
        print(f"  reference: supervised train steps of {2 * r['batch']} in-memory tensors (1 warm-up step): "
              f"{ref:.2f} img/s; SSL views/s / reference = {r['views_per_s'] / ref:.2f}")
    gpu = args.gpu_img_s if args.gpu_img_s is not None else H100_REFERENCE["eager"] * args.gpu_efficiency
    p = project(gpu, args.gpu_size, args.epochs)
    print(f"projected RxRx1 SSL ({p['sites']:,} sites, {p['epochs']} epochs, 2 views, 6x{p['size']}²) at "
          f"{p['views_per_s']:.0f} views/s: {p['views']:,} views, {p['hours']:.2f} GPU hours "
          f"(from {gpu:.0f} img/s at 6x{REFERENCE_SIZE}²)")


if __name__ == "__main__":
    main()
