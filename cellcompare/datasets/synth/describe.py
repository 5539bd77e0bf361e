"""Write the true class differences beside a synthetic dataset."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["ClassDifference", "spread_factors", "write_class_differences"]


@dataclass(frozen=True)
class ClassDifference:
    """What truly sets one synthetic class apart: 3 lines of prose and the parameters."""

    name: str
    lines: tuple[str, str, str]
    params: dict[str, Any] = field(default_factory=dict)


def spread_factors(n: int, spread: float, rng: np.random.Generator) -> np.ndarray:
    """``n`` factors evenly spaced in ``[1 - spread, 1 + spread]``, in a random order.

    Even spacing guarantees that every pair of classes differs by at least
    ``2 * spread / (n - 1)`` in this parameter; the random order decorrelates parameters.
    """
    if n == 1:
        return np.ones(1)
    return rng.permutation(np.linspace(1 - spread, 1 + spread, n))


def write_class_differences(out: Path, diffs: Sequence[ClassDifference], title: str) -> None:
    """Write ``CLASS_DIFFERENCES.md`` (3 lines per class) and ``class_differences.json``."""
    lines = [f"# {title}", ""]
    for diff in diffs:
        lines += [f"## {diff.name}", *diff.lines, ""]
    (out / "CLASS_DIFFERENCES.md").write_text("\n".join(lines))
    payload = {d.name: {"description": " ".join(d.lines), "params": d.params} for d in diffs}
    (out / "class_differences.json").write_text(json.dumps(payload, indent=2, sort_keys=True))
