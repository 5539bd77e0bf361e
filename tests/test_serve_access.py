"""serve/: a bearer token on every route but /health, no unprotected listening beyond this
machine, and no /docs or /openapi.json unless asked for."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from cellcompare.serve.access import AccessError, check_binding, load_token
from tests.test_serve_http import free_port, post, post_batch, running_server, tiff_bytes
from tests.test_serve_offline import disk_image, train_classical

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "correct-horse-battery-staple"


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return train_classical(tmp_path_factory.mktemp("access") / "m")


@pytest.fixture(scope="module")
def token_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("secrets") / "token"
    path.write_text(TOKEN + "\n")
    path.chmod(0o600)
    return path


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_every_route_but_health_needs_the_token(model, token_file):
    image = tiff_bytes(disk_image(20, 1)[0])
    with running_server(model, "--token-file", str(token_file)) as url:
        assert httpx.get(f"{url}/health").status_code == 200          # a health check has none
        for headers in ({}, bearer("wrong"), {"Authorization": TOKEN}):  # none, wrong, no scheme
            answers = [httpx.get(f"{url}/model", headers=headers),
                       post(url, image, headers=headers),
                       post_batch(url, [("a.tif", image)], headers=headers)]
            assert [a.status_code for a in answers] == [401, 401, 401], headers
            assert all(a.headers["www-authenticate"] == "Bearer" for a in answers)
            assert "bearer token" in answers[0].json()["detail"]
        assert httpx.get(f"{url}/model", headers=bearer(TOKEN)).json()["classes"] == ["big", "small"]
        answer = post(url, image, headers=bearer(TOKEN))
        assert answer.status_code == 200 and answer.json()["top"][0]["class"] == "big"
        assert post_batch(url, [("a.tif", image)], headers=bearer(TOKEN)).status_code == 200


def test_token_from_the_environment(model):
    with running_server(model, env={"CELLCOMPARE_TOKEN": TOKEN}) as url:
        assert httpx.get(f"{url}/model").status_code == 401
        assert httpx.get(f"{url}/model", headers=bearer(TOKEN)).status_code == 200


def serve_exit(model: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "cellcompare", "serve", str(model), "--port",
                           str(free_port()), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def test_listening_beyond_loopback_without_a_token_is_refused(model):
    done = serve_exit(model, "--host", "0.0.0.0")
    assert done.returncode == 2
    assert "refusing to listen on 0.0.0.0 without a token" in done.stderr
    assert "--insecure" in done.stderr


def test_insecure_or_a_token_allows_listening_beyond_loopback(model, token_file):
    with running_server(model, "--host", "0.0.0.0", "--insecure") as url:  # reached on 127.0.0.1
        assert httpx.get(f"{url}/model").status_code == 200
    with running_server(model, "--host", "0.0.0.0", "--token-file", str(token_file)) as url:
        assert httpx.get(f"{url}/model").status_code == 401


def test_unreadable_or_empty_token_file_is_refused(model, tmp_path):
    done = serve_exit(model, "--token-file", str(tmp_path / "absent"))
    assert done.returncode == 2 and f"--token-file {tmp_path / 'absent'}: cannot read it" in done.stderr
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(AccessError, match="is empty"):
        load_token(tmp_path / "empty")
    with pytest.raises(AccessError, match="CELLCOMPARE_TOKEN is set but empty"):
        load_token(None, {"CELLCOMPARE_TOKEN": " "})


@pytest.mark.parametrize("host", ["127.0.0.1", "::1", "localhost"])
def test_loopback_needs_no_token(host):
    assert check_binding(host, None, insecure=False) is None


def test_docs_and_openapi_only_with_docs(model):
    with running_server(model) as url:
        assert [httpx.get(f"{url}{p}").status_code for p in ("/docs", "/openapi.json")] == [404, 404]
    with running_server(model, "--docs") as url:
        assert httpx.get(f"{url}/docs").status_code == 200
        paths = httpx.get(f"{url}/openapi.json").json()["paths"]
        assert {"/predict", "/predict/batch", "/model", "/health"} <= set(paths)
