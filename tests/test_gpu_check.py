"""benchmarks/gpu_check.py --smoke: every stage runs on CPU at tiny sizes and records real values."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_smoke_run_records_every_stage(tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("OUT", None)
    done = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--smoke",
                           "--out", str(out), "--work", str(tmp_path / "work")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads((out / "gpu_check.json").read_text())
    assert result["smoke"] and result["device"] == "cpu"
    stages = {(s["stage"], s.get("input"), s.get("mode")): s for s in result["stages"]}
    for key in [("synth", None, None), ("crops", None, None), ("compare", None, None)]:
        assert stages[key]["status"] == "ok", stages[key]
    for name in ("sites", "crops"):
        eager = stages[("throughput", name, "eager")]
        assert eager["status"] == "ok", eager
        assert eager["end_to_end_img_s"] > 0 and eager["ceiling_img_s"] > 0
        assert eager["ratio"] == pytest.approx(eager["end_to_end_img_s"] / eager["ceiling_img_s"], rel=0.01)
        assert eager["gpu_util_end_to_end"] == "n/a (cpu)"
        compiled = stages[("throughput", name, "compiled")]
        assert compiled["status"] == "skipped" and "CUDA only" in compiled["reason"]
    assert stages[("svm_gpu", None, None)]["status"] == "skipped"
    compare = stages[("compare", None, None)]
    assert compare["sites"] == 24 and compare["folds"] == 2
    assert {"svm", "smallcnn"} <= set(compare["models"])
    assert ("xgboost" in compare["models"]) or "not importable" in result["xgboost"]
    for model in compare["models"].values():
        assert 0.0 <= model["accuracy"] <= 1.0 and model["fit_s"] > 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["models"]) == set(compare["models"])
    assert (out / "report.html").stat().st_size > 10_000
    text = (out / "gpu_check.md").read_text()
    assert "SMOKE RUN" in text and "| sites 6×16², batch 8 | eager |" in text


def test_failed_stage_is_recorded_and_later_stages_run(tmp_path):
    sys.path.insert(0, str(REPO / "benchmarks"))
    import gpu_check

    check = gpu_check.Check(tmp_path, gpu_check.Budget(60.0), {"smoke": True})

    def broken():
        raise RuntimeError("inductor could not compile")

    assert check.stage("throughput", broken, input="sites", mode="compiled") is None
    assert check.stage("after", lambda: {"value": 3}) == {"value": 3}
    assert check.stage("late", lambda: {"value": 4}, need_s=120.0) is None
    stages = json.loads((tmp_path / "gpu_check.json").read_text())["stages"]
    assert stages[0]["status"] == "failed" and "inductor could not compile" in stages[0]["error"]
    assert stages[1] == {**stages[1], "status": "ok", "value": 3}
    assert stages[2]["status"] == "skipped" and "over budget" in stages[2]["reason"]
