"""Training throughput of ResNet18 on N×S×S images: end to end vs pre-loaded tensors.

End to end = numpy arrays (in memory or ``.npy`` files on disk, read on access) → ImageTensorDataset
with training augmentation → DataLoader (workers, pinned memory on CUDA) → train step. The
ceiling is the same train step on batches already on the device. Prints both images/s, the
ratio (goal on a GPU: ≥ 60 %) and the GPU utilisation sampled during each phase (pynvml or
nvidia-smi when present).

Example (GPU): ``python benchmarks/deep_bench.py``;
(CPU check): ``python benchmarks/deep_bench.py --size 64 --n-images 64 --batch-size 16 --steps 6``.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from cellcompare.deep.augment import build_augmentation
from cellcompare.deep.config import AugmentConfig, DeepConfig
from cellcompare.deep.data import ImageTensorDataset
from cellcompare.deep.models import build_model
from cellcompare.deep.train import build_optimizer, make_loader, resolve_device

logger = logging.getLogger("deep_bench")


class NpyFiles:
    """A lazy sequence of ``.npy`` files: each item is read from disk on access."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> np.ndarray:
        return np.load(self.paths[i])


class GpuSampler:
    """Background sampling of GPU utilisation (%) with pynvml, else nvidia-smi; no-op on CPU."""

    def __init__(self, device: torch.device, interval: float = 0.2) -> None:
        self.samples: list[float] = []
        self.interval = interval
        self._stop = threading.Event()
        self._read = self._reader() if device.type == "cuda" else None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _reader(self):
        try:
            import pynvml

            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(torch.cuda.current_device())
            return lambda: float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)
        except Exception:  # pynvml missing or unusable: fall back to the CLI
            if shutil.which("nvidia-smi") is None:
                return None
            query = ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits",
                     f"--id={torch.cuda.current_device()}"]
            return lambda: float(subprocess.run(query, capture_output=True, text=True).stdout.split()[0])

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.samples.append(self._read())

    def __enter__(self) -> "GpuSampler":
        if self._read is not None:
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._read is not None:
            self._thread.join()

    def mean(self) -> float | None:
        return float(np.mean(self.samples)) if self.samples else None


def train_steps(model: nn.Module, optimizer: torch.optim.Optimizer, batches, device: torch.device, *,
                steps: int, warmup: int, amp: bool) -> float:
    """Run ``warmup + steps`` train steps from the iterator ``batches``; images/s over ``steps``."""
    criterion = nn.CrossEntropyLoss()
    model.train()
    seen, start = 0, None
    for step in range(warmup + steps):
        if step == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start, seen = time.perf_counter(), 0
        images, labels = next(batches)
        if device.type == "cuda":
            images = images.to(device, non_blocking=True, memory_format=torch.channels_last)
        labels = labels.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp and device.type == "cuda"):
            loss = criterion(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        seen += labels.shape[0]
    if device.type == "cuda":
        torch.cuda.synchronize()
    return seen / (time.perf_counter() - start)


def forever(loader):
    while True:
        yield from loader


def make_images(args: argparse.Namespace, workdir: Path):
    rng = np.random.default_rng(0)
    arrays = [rng.random((args.channels, args.size, args.size), dtype=np.float32) for _ in range(args.n_images)]
    labels = rng.integers(0, args.classes, args.n_images)
    if args.source == "memory":
        return arrays, labels
    paths = []
    for i, array in enumerate(arrays):
        paths.append(workdir / f"{i:05d}.npy")
        np.save(paths[-1], array)
    return NpyFiles(paths), labels


def fresh_model(args: argparse.Namespace, device: torch.device) -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model, _ = build_model(args.arch, args.channels, args.classes, "none")
    model.to(device)
    if device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    config = DeepConfig(arch=args.arch, weights="none")
    optimizer = build_optimizer(model, config, lr=1e-3)
    if args.compile and device.type == "cuda":
        model = torch.compile(model)
    return model, optimizer


def run(args: argparse.Namespace) -> dict[str, float | None]:
    device = resolve_device(args.device)
    with tempfile.TemporaryDirectory() as tmp:
        images, labels = make_images(args, Path(tmp))
        mean, std = np.full(args.channels, 0.5, np.float32), np.full(args.channels, 0.29, np.float32)
        dataset = ImageTensorDataset(images, labels, mean=mean, std=std, image_size=args.size,
                               transform=build_augmentation(AugmentConfig(mask_background_p=0.5)))
        loader = make_loader(dataset, batch_size=args.batch_size, shuffle=True, device=device,
                             num_workers=args.workers, seed=0, drop_last=True)
        model, optimizer = fresh_model(args, device)
        with GpuSampler(device) as e2e_gpu:
            e2e = train_steps(model, optimizer, forever(loader), device, steps=args.steps,
                              warmup=args.warmup, amp=args.amp)
    pool = torch.randn(min(args.n_images, 4 * args.batch_size), args.channels, args.size, args.size, device=device)
    if device.type == "cuda":
        pool = pool.contiguous(memory_format=torch.channels_last)
    pool_labels = torch.randint(0, args.classes, (pool.shape[0],), device=device)

    def device_batches():
        while True:
            for i in range(0, pool.shape[0] - args.batch_size + 1, args.batch_size):
                yield pool[i:i + args.batch_size], pool_labels[i:i + args.batch_size]

    model, optimizer = fresh_model(args, device)
    with GpuSampler(device) as ceiling_gpu:
        ceiling = train_steps(model, optimizer, device_batches(), device, steps=args.steps,
                              warmup=args.warmup, amp=args.amp)
    return {"end_to_end": e2e, "ceiling": ceiling, "ratio": e2e / ceiling,
            "gpu_util_end_to_end": e2e_gpu.mean(), "gpu_util_ceiling": ceiling_gpu.mean(),
            "device": str(torch.cuda.get_device_name() if device.type == "cuda" else "cpu"),
            "workers": loader.num_workers}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet18", choices=["resnet18", "smallcnn"])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--channels", type=int, default=6)
    parser.add_argument("--classes", type=int, default=4)
    parser.add_argument("--n-images", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: auto)")
    parser.add_argument("--source", choices=["memory", "disk"], default="disk")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--no-amp", dest="amp", action="store_false")
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    result = run(args)
    gpu = (f"GPU util end-to-end {result['gpu_util_end_to_end']:.0f} %, ceiling {result['gpu_util_ceiling']:.0f} %"
           if result["gpu_util_ceiling"] is not None else "GPU util n/a")
    print(f"{args.arch} {args.channels}x{args.size}x{args.size} batch {args.batch_size} on {result['device']} "
          f"({args.source}, {result['workers']} workers): end-to-end {result['end_to_end']:.1f} img/s, "
          f"pre-loaded ceiling {result['ceiling']:.1f} img/s, ratio {100 * result['ratio']:.0f} % "
          f"(goal >= 60 %); {gpu}")


if __name__ == "__main__":
    main()
