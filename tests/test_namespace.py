"""The installed project adds exactly one top-level import name, ``cellcompare``.

Run from a folder outside the checkout (the way a lab imports it beside Hugging Face's
``datasets``), so the checkout on ``sys.path`` cannot hide what the installation provides.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
OLD_NAMES = ("datasets", "features", "classical", "deep", "comparison", "reports", "serve")
SUBCOMMANDS = ("synth", "convert", "summary", "extract", "compact", "embed", "export", "compare", "fetch", "report",
               "predict", "score", "undo",
               "serve")

_PROBE = """
import importlib.util, json, sys
out = {}
for name in sys.argv[1:]:
    spec = importlib.util.find_spec(name)
    out[name] = None if spec is None else (spec.origin or list(spec.submodule_search_locations or []))
print(json.dumps(out))
"""


def _find_specs(names, cwd: Path) -> dict:
    done = subprocess.run([sys.executable, "-c", _PROBE, *names], cwd=cwd, check=True,
                          capture_output=True, text=True)
    return json.loads(done.stdout)


def _inside_repo(origin) -> bool:
    paths = origin if isinstance(origin, list) else [origin]
    return any(p and Path(p).resolve().is_relative_to(REPO) for p in paths)


def test_old_package_names_never_resolve_to_this_project(tmp_path):
    found = _find_specs(OLD_NAMES, cwd=tmp_path)
    ours = {name: origin for name, origin in found.items() if origin and _inside_repo(origin)}
    assert ours == {}, f"the installed project provides top-level packages {sorted(ours)}"


def test_cellcompare_is_importable_outside_the_checkout(tmp_path):
    found = _find_specs(["cellcompare", "cellcompare.datasets", "cellcompare.serve"], cwd=tmp_path)
    assert all(_inside_repo(origin) for origin in found.values()), found


def test_distribution_declares_one_top_level_package():
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    find = project["tool"]["setuptools"]["packages"]["find"]
    assert find["include"] == ["cellcompare", "cellcompare.*"]
    top_level = sorted(p.name for p in REPO.iterdir()
                       if (p / "__init__.py").is_file() and not p.name.startswith("."))
    assert top_level == ["cellcompare"]


def test_console_script_lists_every_subcommand(tmp_path):
    script = Path(sys.executable).with_name("cellcompare")
    assert script.is_file(), f"console script {script} not installed; run `make test` (pip install -e .)"
    done = subprocess.run([str(script), "--help"], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    listed = [line.split()[0] for line in done.stdout.splitlines() if line.startswith("    ")
              and line.split()[0].isalpha()]
    assert sorted(listed) == sorted(SUBCOMMANDS)


@pytest.mark.parametrize("command", SUBCOMMANDS)
def test_each_subcommand_has_help(command, capsys):
    from cellcompare.cli import build_parser

    with pytest.raises(SystemExit) as exited:
        build_parser().parse_args([command, "--help"])
    assert exited.value.code == 0
    assert f"usage: cellcompare {command}" in capsys.readouterr().out
