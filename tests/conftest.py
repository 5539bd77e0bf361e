"""Shared test fixtures: real example data from ../shared when present."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_EXAMPLES = REPO.parent / "shared" / "data" / "cellprofiler-examples"


@pytest.fixture(autouse=True)
def _quiet_logging(caplog):
    caplog.set_level(logging.WARNING)


@pytest.fixture
def example_fly() -> Path:
    """Folder of CellProfiler's ExampleFly images; skip when ../shared is absent."""
    path = SHARED_EXAMPLES / "ExampleFly" / "images"
    if not path.is_dir():
        pytest.skip(f"CellProfiler example images not found at {path} (../shared absent)")
    return path


@pytest.fixture
def example_colocalization() -> Path:
    """Folder of CellProfiler's ExampleColocalization images; skip when absent."""
    path = SHARED_EXAMPLES / "ExampleColocalization" / "images"
    if not path.is_dir():
        pytest.skip(f"CellProfiler example images not found at {path} (../shared absent)")
    return path
