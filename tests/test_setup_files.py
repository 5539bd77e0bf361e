"""The set-up files agree with each other: one pinned list, mirrored for conda."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def _pins(lines: list[str]) -> dict[str, str]:
    pins = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9_.\-\[\]]+)==([A-Za-z0-9_.+\-]+)", line)
        assert match, f"unpinned requirement {line!r}: every dependency is pinned with =="
        pins[match.group(1).lower()] = match.group(2)
    return pins


def test_requirements_are_all_pinned():
    pins = _pins((REPO / "requirements.txt").read_text().splitlines())
    for name in ("torch", "torchvision", "cp-measure", "xgboost-cpu", "scikit-learn"):
        assert name in pins


def test_environment_yml_mirrors_requirements():
    req = _pins((REPO / "requirements.txt").read_text().splitlines())
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    assert any(str(dep).startswith("python=3.11") for dep in env["dependencies"])
    pip_section = next(dep["pip"] for dep in env["dependencies"] if isinstance(dep, dict))
    assert _pins(pip_section) == req


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text()
    ci = (REPO / ".ci" / "run").read_text()
    assert "make test" in readme and "make demo" in readme
    assert re.search(r"^make test$", ci, flags=re.MULTILINE)
