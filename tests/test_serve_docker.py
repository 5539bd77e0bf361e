"""The Dockerfile's commands agree with the command line (no container runtime runs here).

Its ``CMD`` parses as ``cellcompare serve`` with the paths the README documents, really serves
when run with those paths swapped for a model and a token file, and its ``HEALTHCHECK``
command passes against that server (and fails once it is gone).
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import httpx

from cellcompare.cli import build_parser
from tests.test_serve_http import free_port, running_cli
from tests.test_serve_offline import train_classical

ROOT = Path(__file__).resolve().parents[1]


def instructions() -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` of the Dockerfile, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, rest = line.partition(" ")
            out.append((name.upper(), rest.strip()))
    return out


def only(name: str) -> str:
    found = [rest for instr, rest in instructions() if instr == name]
    assert len(found) == 1, f"Dockerfile has {len(found)} {name} instructions; expected one"
    return found[0]


def exec_form(arguments: str) -> list[str]:
    """A ``CMD [...]`` (exec form: a JSON array, so no shell between Docker and the process)."""
    argv = json.loads(arguments)
    assert isinstance(argv, list) and all(isinstance(a, str) for a in argv), arguments
    return argv


def serve_command() -> list[str]:
    return exec_form(only("CMD"))


def health_command() -> list[str]:
    rest = only("HEALTHCHECK")
    return exec_form(rest[rest.index("CMD ") + 4:])


def test_base_image_is_the_projects_python():
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    image = only("FROM")
    assert re.fullmatch(r"python:3\.11[.\d]*-slim", image), image
    assert requires == ">=3.11"


def test_it_installs_the_pinned_requirements_then_the_package():
    steps = instructions()
    runs = [rest for name, rest in steps if name == "RUN"]
    copies = [rest for name, rest in steps if name == "COPY"]
    assert any(shlex.split(c)[:-1] == ["requirements.txt", "pyproject.toml"] for c in copies)
    assert any("pip install -r requirements.txt" in r for r in runs)
    assert any("pip install --no-deps ." in r for r in runs)   # nothing unpinned comes in
    order = [name + " " + rest for name, rest in steps]
    first = next(i for i, s in enumerate(order) if "-r requirements.txt" in s)
    package = next(i for i, s in enumerate(order) if "--no-deps ." in s)
    assert first < next(i for i, s in enumerate(order) if s.startswith("COPY cellcompare")) < package
    assert only("USER") != "root"


def test_cmd_is_the_serve_command_line_the_readme_documents():
    argv = serve_command()
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert argv[0] in scripts and scripts[argv[0]] == "cellcompare.cli:main"
    args = build_parser().parse_args(argv[1:])
    assert (args.command, args.model_dir, args.host, args.token_file) == \
        ("serve", "/model", "0.0.0.0", "/run/secrets/token")
    assert only("EXPOSE") == str(args.port)
    assert f"127.0.0.1:{args.port}/health" in " ".join(health_command())
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("### Serving a model in a container"):]
    assert "/run/secrets/token" in section and ":/model" in section and "docker run" in section
    assert "--gpus all" in section and "--device cuda" in section     # deep models on a GPU


def test_cmd_serves_and_the_healthcheck_passes(tmp_path):
    """The CMD as Docker runs it, with its model, token and port swapped for local ones."""
    model = train_classical(tmp_path / "model")
    token = tmp_path / "token"
    token.write_text("s3cret\n")
    token.chmod(0o600)
    argv = serve_command()
    args = build_parser().parse_args(argv[1:])
    port = free_port()
    swap = {"/model": str(model), "/run/secrets/token": str(token), str(args.port): str(port)}
    local = [swap.get(a, a) for a in argv[1:]]
    health = [sys.executable if a == "python" else a.replace(f":{args.port}/", f":{port}/")
              for a in health_command()]
    with running_cli(local, port) as url:
        assert httpx.get(f"{url}/model").status_code == 401                  # the token is on
        assert httpx.get(f"{url}/model", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert subprocess.run(health, capture_output=True, timeout=30).returncode == 0
    assert subprocess.run(health, capture_output=True, timeout=30).returncode != 0
