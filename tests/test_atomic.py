"""The one JSON writer: atomic, NaN as null, numpy values as plain ones; old NaN files still load."""

from __future__ import annotations

import json
import os
import stat

import numpy as np
import pandas as pd
import pytest

from cellcompare.atomic import atomic_path, write_json, write_text
from cellcompare.reports.load import load_results


def test_nan_and_infinity_are_written_as_null(tmp_path):
    path = write_json(tmp_path / "x.json", {"a": float("nan"), "b": [1.0, float("inf")],
                                            "c": np.float32(0.5), "d": np.array([np.nan, 2.0])})
    text = path.read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text) == {"a": None, "b": [1.0, None], "c": 0.5, "d": [None, 2.0]}


def test_lists_of_plain_values_take_one_line(tmp_path):
    text = write_json(tmp_path / "x.json", {"rows": [[1, 2, 3], [4, 5, 6]]}).read_text()
    assert "[1, 2, 3]" in text and "[4, 5, 6]" in text


def test_an_old_results_folder_with_nan_literals_still_loads(tmp_path):
    """Folders written before the one writer hold ``NaN`` literals (json.dumps' default)."""
    from tests.test_reports_build import make_results_dir  # a complete, tiny results folder

    out = make_results_dir(tmp_path / "results")
    metrics = json.loads((out / "metrics.json").read_text())
    first = next(iter(metrics["models"].values()))["folds"][0]
    first["log_loss"] = float("nan")
    (out / "metrics.json").write_text(json.dumps(metrics))  # the old writer's NaN literal
    assert "NaN" in (out / "metrics.json").read_text()
    loaded = load_results(out)
    assert np.isnan(next(iter(loaded.metrics["models"].values()))["folds"][0]["log_loss"])


@pytest.fixture
def umask():
    """Set the process umask for one test and restore the previous one afterwards."""
    before = os.umask(0o022)
    os.umask(before)
    yield os.umask
    os.umask(before)


@pytest.mark.parametrize("mask, mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_result_files_get_the_mode_of_the_process_umask(tmp_path, umask, mask, mode):
    """Colleagues on a shared server can read results under umask 022 (mkstemp's 0600 before)."""
    umask(mask)
    written = [write_json(tmp_path / "m.json", {"a": 1}), write_text(tmp_path / "r.html", "<p>")]
    with atomic_path(tmp_path / "t.parquet") as tmp:
        pd.DataFrame({"x": [1, 2]}).to_parquet(tmp)
    written.append(tmp_path / "t.parquet")
    assert [stat.S_IMODE(p.stat().st_mode) for p in written] == [mode] * 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "r.html", "t.parquet"]
