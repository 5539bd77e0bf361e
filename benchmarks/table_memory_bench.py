"""Peak memory of compare's table reads at 100k images: the capped per-cell read vs the whole one.

Writes synthetic feature folders (tables only, no images) in the layout that
``features.tables.compact`` writes (``dataset/image`` and ``dataset/cell``, Hive partitions of
``--chunk`` consecutive images): ``--images`` rows x ``--features`` float32 per-image columns,
``--cells`` cells per image x ``--cell-features`` float32 per-cell columns, plus the metadata
columns of a real extraction. Two smaller folders (``--small``, ``--medium`` images) are where
the whole per-cell table can still be read; the small one also holds the cells as one Parquet
part per image, what the batch job writes.

Each measurement runs in a fresh process and reports its peak resident memory (``VmHWM``)
minus the resident memory after imports, so each number is the read alone:

* ``image``: ``features.load_table(folder, "image")``, what ``compare`` reads first;
* ``cells`` (cap N): ``comparison.celltable.read_cells`` with ``cell_table.cells_per_image: N``,
  the runner's call (``features.tables.sample_cells``);
* ``runner``: both in one process, as ``compare`` holds them;
* ``whole-parts``: the old ``load_table`` (one pandas frame per part, then concat), small only;
* ``whole-compacted``: ``load_table(folder, "cell")`` without a cap, at small and medium,
  projected to ``--images`` along the line through those two points.

Usage: python benchmarks/table_memory_bench.py [--quick] [--dir /tmp/cc_tables]
"""

from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing as mp
import os
import platform
import shutil
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROW_GROUP = 65536


def _status_mb(key: str) -> float:
    """``VmRSS`` / ``VmHWM`` of this process in MB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"{key} not in /proc/self/status")


def _cell_batch(first_image: int, n_images: int, cells: int, n_features: int,
                rng: np.random.Generator) -> pa.Table:
    n = n_images * cells
    image = np.repeat(np.arange(first_image, first_image + n_images, dtype=np.int64), cells)
    ids = pa.array([f"site{i:06d}" for i in range(first_image, first_image + n_images)])
    columns = {
        "Metadata_ImageNumber": image,
        "Metadata_sample_id": pa.compute.take(ids, pa.array(image - first_image)),
        "Metadata_Plate": pa.array([f"P{i // 1000:03d}" for i in image.tolist()]),
        "Metadata_label": pa.array([f"siRNA-{i % 1139:04d}" for i in image.tolist()]),
        "Metadata_ObjectNumber": np.tile(np.arange(1, cells + 1, dtype=np.int64), n_images),
        "Metadata_Location_Center_X": rng.uniform(0, 512, n),
        "Metadata_Location_Center_Y": rng.uniform(0, 512, n),
    }
    values = rng.standard_normal((n, n_features), dtype=np.float32)
    columns.update({f"Cells_Intensity_F{j:04d}_DNA": values[:, j] for j in range(n_features)})
    return pa.table(columns)


def _image_batch(first_image: int, n_images: int, cells: int, n_features: int,
                 rng: np.random.Generator) -> pa.Table:
    image = np.arange(first_image, first_image + n_images, dtype=np.int64)
    columns = {
        "Metadata_ImageNumber": image,
        "Metadata_sample_id": pa.array([f"site{i:06d}" for i in image.tolist()]),
        "Metadata_Plate": pa.array([f"P{i // 1000:03d}" for i in image.tolist()]),
        "Metadata_label": pa.array([f"siRNA-{i % 1139:04d}" for i in image.tolist()]),
        "Metadata_Object_Count": np.full(n_images, cells, dtype=np.int64),
    }
    values = rng.standard_normal((n_images, n_features), dtype=np.float32)
    columns.update({f"Cells_Intensity_F{j:04d}_DNA": values[:, j] for j in range(n_features)})
    return pa.table(columns)


def write_folder(folder: Path, n_images: int, args, *, parts: bool = False) -> None:
    """A compacted feature folder (and, with ``parts``, one cell part per image)."""
    rng = np.random.default_rng(0)
    for level, make, width in (("image", _image_batch, args.features),
                               ("cell", _cell_batch, args.cell_features)):
        target = folder / "dataset" / level
        for chunk, first in enumerate(range(1, n_images + 1, args.chunk)):
            count = min(args.chunk, n_images + 1 - first)
            table = make(first, count, args.cells, width, rng)
            path = target / f"Metadata_Chunk={chunk}" / "part-0.parquet"
            path.parent.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, path, row_group_size=ROW_GROUP)
            if parts and level == "cell":
                (folder / "cells").mkdir(exist_ok=True)
                for i in range(count):
                    pq.write_table(table.slice(i * args.cells, args.cells),
                                   folder / "cells" / f"{first + i:06d}.parquet")
    os.utime(folder / "dataset" / "cell")  # newer than the parts: the compacted copy is current
    os.utime(folder / "dataset" / "image")


def _measure(what: str, folder: str, cap: int | None, queue) -> None:
    """One read in a fresh process: peak RSS above the RSS after imports."""
    import pandas as pd  # noqa: F401 - imported before the baseline like every reader's

    from cellcompare.comparison.celltable import cell_table_record, read_cells
    from cellcompare.comparison.config import CellTableConfig, CompareConfig
    from cellcompare.features import load_table
    from cellcompare.features.tables import read_part

    folder = Path(folder)
    config = CompareConfig(cell_table=CellTableConfig(cells_per_image=cap), seed=0)
    record = cell_table_record(config, 0)
    base = _status_mb("VmRSS")
    start = time.perf_counter()
    rows = cols = 0
    if what in ("image", "runner"):
        images = load_table(folder, level="image")
        rows, cols = images.shape
    if what in ("cells", "runner"):
        cells = read_cells(config, folder, record, "models")
        rows, cols = cells.shape
    if what == "whole-parts":  # HEAD's load_table: one pandas frame per part, then concat
        parts = sorted((folder / "cells").glob("*.parquet"))
        cells = pd.concat([read_part(p) for p in parts], ignore_index=True)
        cells = cells.sort_values(["Metadata_ImageNumber", "Metadata_ObjectNumber"],
                                  kind="stable").reset_index(drop=True)
        rows, cols = cells.shape
    if what == "whole-compacted":
        cells = load_table(folder, level="cell")
        rows, cols = cells.shape
    queue.put({"seconds": time.perf_counter() - start, "rows": int(rows), "columns": int(cols),
               "baseline_mb": base, "peak_mb": _status_mb("VmHWM"),
               "read_mb": _status_mb("VmHWM") - base})


def measure(what: str, folder: Path, cap: int | None = None) -> dict:
    """Run :func:`_measure` in a fresh (spawned) process."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_measure, args=(what, str(folder), cap, queue))
    proc.start()
    result = queue.get()
    proc.join()
    return {"read": what, "cap": cap, **result}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=100_000)
    parser.add_argument("--features", type=int, default=3000, help="per-image float32 columns")
    parser.add_argument("--cells", type=int, default=20, help="cells per image")
    parser.add_argument("--cell-features", type=int, default=500, help="per-cell float32 columns")
    parser.add_argument("--cap", type=int, default=5, help="cell_table.cells_per_image")
    parser.add_argument("--small", type=int, default=4000, help="images of the whole-table reads")
    parser.add_argument("--medium", type=int, default=20000, help="images of the second whole read")
    parser.add_argument("--chunk", type=int, default=2000, help="images per compacted partition")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/cc_table_memory"))
    parser.add_argument("--keep", action="store_true", help="keep the written folders")
    parser.add_argument("--reuse", action="store_true", help="read folders kept by --keep")
    parser.add_argument("--quick", action="store_true",
                        help="5,000 images x 300 / 100 features, 500 / 1,000 small (a minute)")
    args = parser.parse_args(argv)
    if args.quick:
        args.images, args.features, args.cell_features = 5000, 300, 100
        args.small, args.medium, args.chunk = 500, 1000, 500
    start = time.perf_counter()
    folders = {"large": args.dir / f"large_{args.images}", "small": args.dir / f"small_{args.small}",
               "medium": args.dir / f"medium_{args.medium}"}
    sizes = {}
    for name, n in (("large", args.images), ("small", args.small), ("medium", args.medium)):
        if not (args.reuse and folders[name].is_dir()):
            shutil.rmtree(folders[name], ignore_errors=True)
            write_folder(folders[name], n, args, parts=name == "small")
        sizes[name] = sum(p.stat().st_size for p in folders[name].rglob("*.parquet"))
    written = time.perf_counter() - start
    plan = [("whole-parts", "small", None), ("whole-compacted", "small", None),
            ("cells", "small", args.cap), ("whole-compacted", "medium", None),
            ("cells", "medium", args.cap), ("image", "large", None), ("cells", "large", args.cap),
            ("runner", "large", args.cap)]
    n_images = {"small": args.small, "medium": args.medium, "large": args.images}
    records = []
    for read, name, cap in plan:
        records.append({"images": n_images[name], **measure(read, folders[name], cap)})
        width = args.features if read == "image" else args.cell_features
        records[-1]["data_mb"] = records[-1]["rows"] * width * 4 / 2**20  # float32 values kept
    print(f"# {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
          f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GB, load average "
          f"{os.getloadavg()[0]:.1f}; {args.images:,} images x {args.features} features, "
          f"{args.cells} cells x {args.cell_features} features, cap {args.cap}; folders "
          + ", ".join(f"{k} {v / 2**30:.2f} GB" for k, v in sizes.items())
          + f" (written or found in {written:.0f} s)")
    print(f"{'read':<16}{'cap':>5}{'images':>9}{'rows':>11}{'cols':>6}{'data MB':>9}"
          f"{'read MB':>9}{'x data':>8}{'s':>7}")
    for r in records:
        print(f"{r['read']:<16}{str(r['cap'] or '-'):>5}{r['images']:>9,}{r['rows']:>11,}"
              f"{r['columns']:>6}{r['data_mb']:>9.0f}{r['read_mb']:>9.0f}"
              f"{r['read_mb'] / max(r['data_mb'], 1e-9):>8.2f}{r['seconds']:>7.1f}")
    by = {(r["read"], r["images"]): r["read_mb"] for r in records}
    for n in (args.small, args.medium):
        print(f"at {n:,} images, measured in this run: whole-compacted / cap {args.cap} = "
              f"{by[('whole-compacted', n)] / by[('cells', n)]:.1f}x"
              + (f", whole-parts / cap {args.cap} = {by[('whole-parts', n)] / by[('cells', n)]:.1f}x"
                 if ("whole-parts", n) in by else ""))
    slope = ((by[("whole-compacted", args.medium)] - by[("whole-compacted", args.small)])
             / (args.medium - args.small))
    whole = by[("whole-compacted", args.small)] + slope * (args.images - args.small)
    capped = by[("cells", args.images)]
    print(f"at {args.images:,} images: whole per-cell table projected {whole / 1024:.1f} GB "
          f"({slope * 1000:.0f} MB per 1,000 images) vs cap {args.cap} measured {capped / 1024:.2f} GB: "
          f"{whole / capped:.1f}x; runner (image table + capped cells) measured "
          f"{by[('runner', args.images)] / 1024:.2f} GB above imports")
    print(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "records": records}))
    if not args.keep:
        shutil.rmtree(args.dir, ignore_errors=True)


if __name__ == "__main__":
    main()
