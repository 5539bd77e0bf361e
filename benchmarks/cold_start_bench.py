"""Benchmark: the first site of a fresh installation, before and after compiling at install.

Run from the repository root::

    python benchmarks/cold_start_bench.py [--size 512] [--preset full]

Each measurement is a new Python process with its own empty numba cache (``NUMBA_CACHE_DIR``
in a temporary folder, so the repository's cache is neither used nor touched):

- before: the first ``extract_sample`` of a process on an empty cache (what a user's first site
  cost when nothing was compiled at install);
- install: ``python -m cellcompare.features.warmup`` (what ``make venv`` now runs once);
- after: the first ``extract_sample`` of a new process on the cache the install step wrote;
- warm: the second site of that process (the steady state), for reference.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

_FIRST_SITE = """
import json, sys, tempfile, time, warnings
from pathlib import Path
warnings.simplefilter("ignore")
t0 = time.perf_counter()
from cellcompare.datasets import open_dataset
from cellcompare.datasets.synth import make_cellpainting
from cellcompare.features import FeatureConfig, extract_sample
imported = time.perf_counter() - t0
with tempfile.TemporaryDirectory() as tmp:
    root = make_cellpainting(Path(tmp) / "d", classes=1, per_class=2, size={size}, plates=1)
    ds, config = open_dataset(root), FeatureConfig(preset="{preset}")
    t = time.perf_counter(); extract_sample(ds[0], config); first = time.perf_counter() - t
    t = time.perf_counter(); extract_sample(ds[1], config); second = time.perf_counter() - t
print(json.dumps({{"import": imported, "first": first, "second": second}}))
"""


def _run(code: str, env: dict) -> dict:
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True,
                         text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    """Run the three processes and print the figures."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--preset", default="full")
    args = parser.parse_args()
    code = _FIRST_SITE.format(size=args.size, preset=args.preset)
    with tempfile.TemporaryDirectory() as before_cache, tempfile.TemporaryDirectory() as after_cache:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
        before = _run(code, {**env, "NUMBA_CACHE_DIR": before_cache})
        install = subprocess.run([sys.executable, "-c", "import time; t = time.perf_counter(); "
                                  "from cellcompare.features.warmup import compile_kernels; "
                                  "compile_kernels(); print(time.perf_counter() - t)"],
                                 env={**env, "NUMBA_CACHE_DIR": after_cache}, check=True,
                                 capture_output=True, text=True)
        after = _run(code, {**env, "NUMBA_CACHE_DIR": after_cache})
    seconds = float(install.stdout.strip().splitlines()[-1])
    print(f"preset={args.preset} size={args.size} (one core, a new process each)")
    print(f"before (empty cache): first site {before['first']:.2f} s, second {before['second']:.2f} s")
    print(f"install step (python -m cellcompare.features.warmup): {seconds:.2f} s")
    print(f"after (cache from install): first site {after['first']:.2f} s, second {after['second']:.2f} s")
    print(f"first-site cost removed: {before['first'] - after['first']:.2f} s "
          f"({before['first'] / after['first']:.1f}x faster first site)")


if __name__ == "__main__":
    main()
