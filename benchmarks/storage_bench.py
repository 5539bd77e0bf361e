"""Benchmark: feature files on disk against the float32 payload they hold.

Run from the repository root::

    python benchmarks/storage_bench.py [--sites 8] [--size 512] [--presets standard full] [--jobs 2]

For synthetic Cell Painting sites (``cellcompare.datasets.synth``, RxRx1 layout, 6 channels)
and each preset it extracts the features once (``run_extraction``, shards) and prints, side by
side in one run:

- the payload: cells x feature columns x 4 B plus image rows x image feature columns x 4 B;
- the shards on disk (``cells/`` + ``image/``) and their ratio to the payload (goal <= 1.10);
- the same tables written the way the batch job wrote them before (one Parquet part per image
  and level, float64, Arrow and pandas schema in the footer, statistics for ``Metadata_*``);
- ``cellcompare compact`` of the shards (both levels, partitioned by plate);
- the seconds of reading the cell table back with ``load_table``.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from cellcompare.datasets.synth import make_cellpainting
from cellcompare.features import FeatureConfig, load_table, run_extraction
from cellcompare.features.tables import compact

log = logging.getLogger("storage_bench")


def _size(paths) -> int:
    return sum(p.stat().st_size for p in paths)


def _payload(cells, images) -> int:
    def features(frame):
        return sum(not c.startswith("Metadata_") for c in frame.columns)
    return len(cells) * features(cells) * 4 + len(images) * features(images) * 4


def _per_image_parts(cells, images, folder: Path) -> int:
    """The tables written as before: one float64 part per image and level."""
    folder.mkdir()
    written = []
    for level, frame in (("cells", cells), ("image", images)):
        for number, part in frame.groupby("Metadata_ImageNumber", sort=True):
            wide = part.astype({c: "float64" for c in part.columns if part[c].dtype == "float32"})
            table = pa.Table.from_pandas(wide, preserve_index=False)
            keys = [n for n in table.column_names if n.startswith("Metadata_")]
            path = folder / f"{level}-{number:06d}.parquet"
            pq.write_table(table, path, write_statistics=keys)
            written.append(path)
    return _size(written)


def run(preset: str, data: Path, work: Path, jobs: int) -> dict:
    out = work / preset
    start = time.perf_counter()
    run_extraction(data, out, FeatureConfig(preset=preset, qc_samples=0), jobs=jobs)
    seconds = time.perf_counter() - start
    start = time.perf_counter()
    cells = load_table(out, level="cell")
    read = time.perf_counter() - start
    images = load_table(out, level="image")
    shards = _size(out.glob("*/shard-*.parquet"))
    old = _per_image_parts(cells, images, work / f"{preset}-old")
    compacted = [compact(out, level) for level in ("cell", "image")]
    packed = sum(_size(c.rglob("*.parquet")) for c in compacted)
    return {"preset": preset, "sites": len(images), "cells": len(cells),
            "cell_columns": cells.shape[1], "image_columns": images.shape[1],
            "payload": _payload(cells, images), "shards": shards, "old": old,
            "compacted": packed, "extract_s": seconds, "read_s": read}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sites", type=int, default=8)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--presets", nargs="+", default=["standard", "full"])
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    with tempfile.TemporaryDirectory() as tmp:
        data = make_cellpainting(Path(tmp) / "data", classes=2, per_class=args.sites // 2,
                                 size=args.size, plates=2)
        mb = 1e6
        print(f"{args.sites} synthetic sites of {args.size}x{args.size}x6; MB = 10^6 bytes")
        print("preset   | cells | columns (cell/image) | payload MB | shards MB | ratio | "
              "per-image parts MB | ratio | compacted MB | ratio | read s")
        for preset in args.presets:
            r = run(preset, data, Path(tmp), args.jobs)
            p = r["payload"]
            print(f"{preset:8s} | {r['cells']:5d} | {r['cell_columns']:5d} / {r['image_columns']:5d} | "
                  f"{p / mb:10.2f} | {r['shards'] / mb:9.2f} | {r['shards'] / p:5.3f} | "
                  f"{r['old'] / mb:18.2f} | {r['old'] / p:5.2f} | {r['compacted'] / mb:12.2f} | "
                  f"{r['compacted'] / p:5.3f} | {r['read_s']:.2f}")


if __name__ == "__main__":
    main()
