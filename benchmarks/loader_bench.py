"""Images/s per core of the deep arm's input path: 6-channel sites from PNGs vs the decoded input cache.

Both sources go through the code a whole-site model trains with: ``deep.data.ImageTensorDataset``
(resize to ``--image-size``, the training augmentation of ``deep.augment.build_augmentation``
with the default ``AugmentConfig``, per-channel normalisation) and ``deep.train.make_loader``
(shuffled, seeded, ``--workers`` processes). The PNG source reads every site's six files on
access (``deep.inputs.SampleImages``); the cache source reads the same sites from
``deep.input_cache.InputCache`` (``inputs.npy``, float16, memory-mapped), built once before
timing (its build time is printed, not counted).

For each worker count, each source is warmed up first (``--warmup`` batches: workers started,
files in the page cache), then one full pass over ``--images`` images is timed. Per core is
images/s divided by the cores doing the loading: ``max(1, workers)`` (with 0 workers the main
process loads). The cache / PNG ratio is measured side by side in the same run.

Synthetic sites come from ``gpu_check.write_sites`` (``datasets.synth.make_cellpainting``).

Usage: python benchmarks/loader_bench.py [--images 512] [--workers 0 1] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gpu_check import Plan, site_dataset, write_sites  # noqa: E402  (the sibling benchmark's pieces)

logger = logging.getLogger("loader_bench")
#: Issue 24's goal: 16 cores feed >= 6,000 img/s.
GOAL_PER_CORE = 400.0


def plan_for(images: int, site_size: int, image_size: int, batch_size: int) -> Plan:
    """A :class:`gpu_check.Plan` writing at least ``images`` sites (4 classes, 2 sites a well)."""
    per_class = max(1, -(-images // 8))
    return dataclasses.replace(Plan(), classes=4, per_class=per_class, plates=2, sites_per_well=2,
                               site_size=site_size, site_input=image_size, batch_size=batch_size)


def timed_pass(dataset, *, batch_size: int, workers: int, warmup: int, seed: int = 0) -> dict:
    """Warm-up batches, then one timed pass of a fresh ``make_loader`` over ``dataset``."""
    from cellcompare.deep.train import make_loader

    torch.manual_seed(seed)
    loader = make_loader(dataset, batch_size=batch_size, shuffle=True, device=torch.device("cpu"),
                         num_workers=workers, seed=seed)
    for i, _ in enumerate(loader):  # workers started, pages read once
        if i + 1 >= warmup:
            break
    start = time.perf_counter()
    seen = 0
    for images, _ in loader:
        seen += images.shape[0]
    seconds = time.perf_counter() - start
    rate = seen / seconds
    cores = max(1, workers)
    return {"images": seen, "seconds": round(seconds, 3), "img_s": round(rate, 1),
            "img_s_per_core": round(rate / cores, 1), "cores": cores}


def sources(root: Path, plan: Plan, n: int, cache_dir: Path) -> tuple[dict, float]:
    """The PNG and cache datasets over the same first ``n`` sites, and the cache build seconds."""
    from cellcompare.datasets import open_dataset
    from cellcompare.deep.input_cache import InputCache, InputSettings

    dataset = open_dataset(root, layout="rxrx1")
    ids = list(dataset.ids[:n])
    start = time.perf_counter()
    cache = InputCache.build(cache_dir, dataset, InputSettings(plan.site_input), sample_ids=ids,
                             jobs=os.cpu_count() or 1, progress=False)
    build_s = time.perf_counter() - start
    png = site_dataset(plan, dataset, n)
    cached = site_dataset(plan, dataset, n, images=cache.images(ids))
    return {"png": png, "cache": cached}, build_s


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=512, help="images per timed pass")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1], help="DataLoader workers")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--site-size", type=int, default=256, help="side of the PNG sites")
    parser.add_argument("--image-size", type=int, default=256, help="model input side")
    parser.add_argument("--warmup", type=int, default=2, help="batches read before timing")
    parser.add_argument("--work", type=Path, default=None, help="folder for the sites and the cache")
    parser.add_argument("--out", type=Path, default=None, help="also write the records as JSON here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    work = args.work or Path(tempfile.mkdtemp(prefix="loader_bench_"))
    plan = plan_for(args.images, args.site_size, args.image_size, args.batch_size)
    start = time.perf_counter()
    write_sites(plan, work)
    logger.info("wrote %d sites of 6 x %d² in %.1f s", plan.classes * plan.per_class * 2,
                args.site_size, time.perf_counter() - start)
    datasets, build_s = sources(work / "data", plan, args.images, work / "inputs")
    print(f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, {platform.machine()}, "
          f"{os.cpu_count()} cpus, torch {torch.__version__}, load average {os.getloadavg()[0]:.1f}; "
          f"{args.images} sites 6 x {args.site_size}² -> {args.image_size}², batch {args.batch_size}, "
          f"default augmentation; warm-up {args.warmup} batches per loader before each timed pass; "
          f"cache built once in {build_s:.1f} s (not timed)")
    records = []
    print("| workers | source | img/s | img/s per core | ratio cache/png |")
    print("|---|---|---|---|---|")
    for workers in args.workers:
        row = {name: timed_pass(ds, batch_size=args.batch_size, workers=workers, warmup=args.warmup)
               for name, ds in datasets.items()}
        ratio = row["cache"]["img_s"] / row["png"]["img_s"]
        for name in ("png", "cache"):
            records.append({"workers": workers, "source": name, **row[name]})
            print(f"| {workers} | {name} | {row[name]['img_s']:.1f} | {row[name]['img_s_per_core']:.1f} | "
                  f"{ratio:.2f} |" if name == "cache" else
                  f"| {workers} | {name} | {row[name]['img_s']:.1f} | {row[name]['img_s_per_core']:.1f} | |")
    best = max(r["img_s_per_core"] for r in records if r["source"] == "cache")
    print(f"cache: best {best:.1f} img/s per core (goal {GOAL_PER_CORE:.0f}): "
          f"{'met' if best >= GOAL_PER_CORE else 'NOT met'}; 16 cores -> {16 * best:,.0f} img/s")
    result = {"records": records, "cache_build_s": build_s, "args": {k: str(v) for k, v in vars(args).items()}}
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
    return result


if __name__ == "__main__":
    main()
