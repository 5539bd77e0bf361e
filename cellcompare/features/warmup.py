"""Compile the feature kernels once, at install (``make venv``), not on a user's first site.

The per-object loops are numba kernels compiled on first use and cached on disk
(``cache=True``: ``__pycache__`` beside the sources, or ``$NUMBA_CACHE_DIR``). A fresh
installation therefore pays the compilation on its first extraction. :func:`compile_kernels`
runs the whole extraction path (reading, segmentation, every family of the ``full`` preset,
Nuclei, Cells and Cytoplasm, with the default conventions) on one tiny synthetic site, which
compiles and caches every kernel for later processes. ``python -m cellcompare.features.warmup``
runs it and logs the time. ``benchmarks/cold_start_bench.py`` measures the first site before
and after.
"""

from __future__ import annotations

import logging
import tempfile
import time
import warnings
from pathlib import Path

__all__ = ["compile_kernels"]

logger = logging.getLogger(__name__)


def compile_kernels(size: int = 96) -> float:
    """Extract one synthetic ``size`` x ``size`` Cell Painting site with every family; returns
    the seconds it took (compilation, or loading the cache when already compiled)."""
    from cellcompare.datasets import open_dataset
    from cellcompare.datasets.synth import make_cellpainting

    from .config import FeatureConfig
    from .extract import extract_sample

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        root = make_cellpainting(Path(tmp) / "site", classes=1, per_class=1, size=size, plates=1)
        extract_sample(open_dataset(root)[0], FeatureConfig(preset="full"))
    seconds = time.perf_counter() - start
    logger.info("feature kernels compiled and cached in %.1f s", seconds)
    return seconds


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    compile_kernels()
