"""The one JSON writer: atomic, NaN as null, numpy values as plain ones; old NaN files still load."""

from __future__ import annotations

import json

import numpy as np

from cellcompare.atomic import write_json
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
