"""serve/: the HTTP service as a real subprocess on 127.0.0.1."""

import io
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import httpx
import numpy as np
import pytest
import tifffile

from cellcompare import serve
from cellcompare.datasets import Sample
from tests.test_serve_offline import disk_image, train_classical

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def tiff_bytes(image: np.ndarray) -> bytes:
    buf = io.BytesIO()
    tifffile.imwrite(buf, image)
    return buf.getvalue()


@contextmanager
def running_server(model: Path, *extra: str) -> Iterator[str]:
    """``cellcompare serve MODEL`` as a subprocess on 127.0.0.1; yields its base URL."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "cellcompare", "serve", str(model), "--host", HOST,
                             "--port", str(port), *extra], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://{HOST}:{port}"
    try:
        for _ in range(300):
            if proc.poll() is not None:
                pytest.fail(f"server exited: {proc.stderr.read().decode()[-2000:]}")
            try:
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        else:
            pytest.fail("server did not answer /health within 30 s")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    model = train_classical(tmp_path_factory.mktemp("http") / "m")
    with running_server(model, "--max-mb", "1") as url:
        yield url, model


def post(url: str, data: bytes, name: str = "x.tif") -> httpx.Response:
    return httpx.post(f"{url}/predict", files={"file": (name, data)}, timeout=60)


def test_model_endpoint_reports_classes_and_input(server):
    body = httpx.get(f"{server[0]}/model").json()
    assert body["classes"] == ["big", "small"]
    assert body["input"]["channels"] == ["Gray"] and body["kind"] == "classical"


def test_http_prediction_equals_offline_predict(server, tmp_path):
    url, model = server
    image = disk_image(8, 7)[0]
    tifffile.imwrite(tmp_path / "a.tif", image)
    offline = serve.predict_inputs(serve.load_predictor(model), [str(tmp_path / "a.tif")])[0]
    body = post(url, (tmp_path / "a.tif").read_bytes()).json()
    assert [t["class"] for t in body["top"]] == [c for c, _ in offline.top]
    assert [t["probability"] for t in body["top"]] == pytest.approx([p for _, p in offline.top])
    assert body["top"][0]["class"] == "small"


def test_png_upload_matches_offline_png(server, tmp_path):
    from PIL import Image
    url, model = server
    Image.fromarray((disk_image(20, 3)[0] // 256).astype(np.uint8)).save(tmp_path / "x.png")
    offline = serve.predict_inputs(serve.load_predictor(model), [str(tmp_path / "x.png")])[0]
    body = post(url, (tmp_path / "x.png").read_bytes(), "x.png").json()
    assert body["shape"] == [1, 64, 64]
    assert [(t["class"], pytest.approx(t["probability"])) for t in body["top"]] == list(offline.top)


@pytest.mark.parametrize("payload, status, words", [
    (b"\x00garbage bytes, not an image", 415, "not a readable image"),
    (tiff_bytes(disk_image(20, 0, channels=3)[:, None]), 422, "3 channel(s)"),
    (tiff_bytes(np.zeros((8, 8), np.uint16)), 422, "8x8 px"),
    (tiff_bytes(np.zeros((4100, 20), np.uint8)), 422, "4100x20 px"),
    (b"\x00" * (2 * 2**20), 413, "exceeds limit"),
])
def test_bad_uploads_get_4xx_json(server, payload, status, words):
    response = post(server[0], payload)
    assert response.status_code == status
    assert words in response.json()["detail"]
    assert "/tmp" not in response.json()["detail"]  # no server paths leak


def post_until_served(url: str, data: bytes, tries: int = 200) -> httpx.Response:
    """What a client does with 503 + Retry-After (all prediction workers busy): wait, retry."""
    for _ in range(tries):
        response = post(url, data)
        if response.status_code != 503:
            return response
        assert response.headers["retry-after"] == "1"
        time.sleep(0.2)
    return response


def test_burst_of_concurrent_requests_all_answered(server):
    data = [tiff_bytes(disk_image(20 if i % 2 else 8, i)[0]) for i in range(16)]
    with ThreadPoolExecutor(16) as pool:
        responses = list(pool.map(lambda d: post_until_served(server[0], d), data))
    assert [r.status_code for r in responses] == [200] * 16
    predictor = serve.load_predictor(server[1])
    samples = [Sample(id=f"s{i}", image=disk_image(20 if i % 2 else 8, i)) for i in range(16)]
    expected = predictor.predict_proba(samples)[1]
    got = [{t["class"]: t["probability"] for t in r.json()["top"]} for r in responses]
    assert [[g["big"], g["small"]] for g in got] == pytest.approx(np.array(expected))
