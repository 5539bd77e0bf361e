"""The package's docstring examples run, and every one imports from ``cellcompare``.

``make test`` collects ``cellcompare/`` with ``--doctest-modules`` (pyproject.toml), as
scikit-image does; these tests check that the collection really reaches every public module and
every docstring holding an example (a module that fails to import, or a decorator hiding a
docstring from doctest, would drop its examples silently), and that no example imports a
package by its name from before the ``cellcompare`` namespace (``>>> from features import x``).
"""

from __future__ import annotations

import ast
import doctest
import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "cellcompare"
OLD_NAMES = ("datasets", "features", "classical", "deep", "comparison", "reports", "serve")

# Collects cellcompare/ in a fresh interpreter with the project's own pytest configuration (no
# --doctest-modules given here: pyproject.toml must supply it) and records what was collected.
_COLLECT = r"""
import json, sys
import pytest

class Recorder:
    def __init__(self):
        self.modules, self.errors, self.items = [], {}, []

    def pytest_collectstart(self, collector):
        if type(collector).__name__ == "DoctestModule":
            self.modules.append(collector.path.relative_to(collector.config.rootpath).as_posix())

    def pytest_collectreport(self, report):
        if report.failed:
            self.errors[report.nodeid] = str(report.longrepr)[-2000:]

    def pytest_collection_modifyitems(self, items):
        self.items = [item.name for item in items if type(item).__name__ == "DoctestItem"]

rec = Recorder()
code = pytest.main(["--collect-only", "-q", "-p", "no:cacheprovider", "cellcompare"], plugins=[rec])
with open(sys.argv[1], "w") as fh:
    json.dump({"code": int(code), "modules": rec.modules, "errors": rec.errors,
               "items": rec.items}, fh)
"""


def _module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def public_module_files() -> list[Path]:
    """Every module of the package doctest collection must import: all but ``_private`` ones.

    ``__main__.py`` is left out (pytest never collects it for doctests: importing it is running
    the command line), as is any ``conftest.py``.
    """
    files = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        if "__pycache__" in rel.parts or path.name in ("__main__.py", "conftest.py"):
            continue
        if any(part.startswith("_") and part != "__init__.py" for part in rel.parts):
            continue
        files.append(path)
    return files


def _docstrings(tree: ast.Module, module: str):
    """``(qualified name, first line, docstring)`` of the module, its classes and functions.

    Classes are entered (methods, nested classes); function bodies are not (doctest does not
    find functions defined inside functions), so these are the docstrings doctest must find.
    """
    found = []

    def visit(node, name: str) -> None:
        doc = ast.get_docstring(node, clean=False)
        if doc is not None:
            found.append((name, node.body[0].lineno, doc))
        if isinstance(node, (ast.Module, ast.ClassDef)):
            for child in node.body:
                if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    visit(child, f"{name}.{child.name}")

    visit(tree, module)
    return found


def _all_docstrings(tree: ast.AST):
    """``(first line, docstring)`` of every module, class and function, nested ones included."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node, clean=False)
            if doc is not None:
                yield node.body[0].lineno, doc


_IMPORT_LINE = re.compile(r"^\s*(?:from\s+(\.*[\w.]*)\s+import\b|import\s+(.+))")


def _imported(source: str) -> list[str]:
    """Module names one example imports (``"."``-prefixed for a relative import)."""
    try:
        tree = ast.parse(source)
    except SyntaxError:  # not Python: read the import lines as text
        names = []
        for line in source.splitlines():
            match = _IMPORT_LINE.match(line)
            if match and match.group(1) is not None:
                names.append(match.group(1))
            elif match:
                names += [n.split()[0] for n in match.group(2).split(",") if n.strip()]
        return names
    names = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            names.append("." * node.level + (node.module or ""))
    return names


def stale_imports(text: str, filename: str = "<source>") -> list[str]:
    """``file:line: statement`` for each docstring example importing other than from cellcompare.

    Flagged: a bare pre-namespace package (``features``, ``datasets.loader``, ...) and a relative
    import; ``numpy``, ``tempfile`` and other third-party or standard modules are fine.
    """
    parser = doctest.DocTestParser()
    out = []
    for first, doc in _all_docstrings(ast.parse(text, filename)):
        for example in parser.get_examples(doc):
            for name in _imported(example.source):
                if name.startswith(".") or name.split(".")[0] in OLD_NAMES:
                    out.append(f"{filename}:{first + example.lineno}: {example.source.strip()}")
    return out


@pytest.fixture(scope="module")
def collected(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("doctest-collection") / "collected.json"
    done = subprocess.run([sys.executable, "-c", _COLLECT, str(out)], cwd=REPO,
                          capture_output=True, text=True, timeout=600)
    assert out.is_file(), f"collection crashed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return json.loads(out.read_text())


def test_pytest_configuration_runs_the_package_doctests():
    options = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert "--doctest-modules" in options["addopts"].split()
    assert options["testpaths"] == ["tests", "cellcompare"]
    assert options["pythonpath"] == ["."]


def test_every_public_module_imports_for_doctest_collection(collected):
    errors = collected["errors"]
    assert errors == {}, "\n\n".join(f"{k}:\n{v}" for k, v in errors.items())
    expected = sorted(p.relative_to(REPO).as_posix() for p in public_module_files())
    assert sorted(collected["modules"]) == expected
    assert collected["code"] == 0


def test_every_docstring_example_is_collected(collected):
    expected = set()
    for path in public_module_files():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        expected |= {name for name, _, doc in _docstrings(tree, _module_name(path))
                     if doctest.DocTestParser().get_examples(doc)}
    assert expected, "no docstring example found in the package"
    missing = sorted(expected - set(collected["items"]))
    assert missing == [], f"docstrings with examples that doctest does not collect: {missing}"


def test_no_example_imports_a_pre_namespace_package():
    stale = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if "__pycache__" not in path.parts:
            stale += stale_imports(path.read_text(encoding="utf-8"), str(path.relative_to(REPO)))
    assert stale == [], "examples must import from cellcompare:\n" + "\n".join(stale)


@pytest.mark.parametrize("line", [
    ">>> from features import FeatureConfig",
    ">>> import datasets",
    ">>> from classical.config import ClassicalConfig",
    ">>> import numpy as np; from deep import DeepClassifier",
    ">>> import comparison.runner as runner",
    ">>> from .build import build_report",
    ">>> from serve import predict  # doctest: +SKIP",
])
def test_checker_flags_a_stale_import(line):
    source = f'def f():\n    """Doc.\n\n    {line}\n    """\n'
    found = stale_imports(source)
    assert [f.split(": ", 1)[0] for f in found] == ["<source>:4"], found


def test_checker_accepts_cellcompare_imports():
    source = ('"""Doc.\n\n>>> import numpy as np\n'
              '>>> from cellcompare.features import extract_sample\n'
              '>>> import cellcompare.datasets as datasets\n'
              '>>> from cellcompare import reports\n"""\n')
    assert stale_imports(source) == []
