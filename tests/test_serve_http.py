"""serve/: the HTTP service as a real subprocess on 127.0.0.1."""

import io
import os
import select
import socket
import subprocess
import sys
import threading
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


#: Safety net only: how long a server may take to listen, or a burst's client to see its next
#: answer, before the test fails saying so. Nothing waits this long when all is well.
SAFETY_S = 120
#: ``cellcompare serve ...`` as ``python -m cellcompare`` runs it, with one line written to the
#: inherited pipe ``argv[1]`` once uvicorn's ``Server.startup`` has returned: the lifespan has
#: loaded the model and the socket is bound and listening (uvicorn sets ``started`` there).
SERVE_SAYING_READY = """
import os, sys
import uvicorn
from cellcompare.cli import main

ready = int(sys.argv.pop(1))
startup = uvicorn.Server.startup

async def startup_then_say_so(self, sockets=None):
    await startup(self, sockets)
    os.write(ready, b"listening\\n")
    os.close(ready)

uvicorn.Server.startup = startup_then_say_so
sys.exit(main(sys.argv[1:]))
"""


@contextmanager
def running_server(model: Path, *extra: str, env: dict[str, str] | None = None) -> Iterator[str]:
    """``cellcompare serve MODEL`` as a subprocess on 127.0.0.1; yields its base URL once it listens.

    ``extra`` arguments come last (a second ``--host`` wins); ``env`` is added to the server's
    environment.
    """
    port = free_port()
    with running_cli(["serve", str(model), "--host", HOST, "--port", str(port), *extra], port,
                     env=env) as url:
        yield url


@contextmanager
def running_cli(args: list[str], port: int, *, env: dict[str, str] | None = None) -> Iterator[str]:
    """``cellcompare ARGS`` (a ``serve`` command listening on ``port``) as a subprocess.

    The server says when its socket listens (a line on a pipe, see :data:`SERVE_SAYING_READY`);
    the test blocks on that pipe instead of polling ``/health``. Yields the base URL on
    127.0.0.1.
    """
    read_end, write_end = os.pipe()
    try:
        proc = subprocess.Popen([sys.executable, "-c", SERVE_SAYING_READY, str(write_end), *args],
                                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                pass_fds=(write_end,), env={**os.environ, **(env or {})})
    finally:
        os.close(write_end)  # the child holds the only write end: its exit closes the pipe
    url = f"http://{HOST}:{port}"
    try:
        readable, _, _ = select.select([read_end], [], [], SAFETY_S)
        said = os.read(read_end, 64) if readable else None
        if said is None:
            pytest.fail(f"server did not listen within {SAFETY_S} s")
        if said != b"listening\n":  # the pipe closed unsaid: the server exited while starting
            proc.wait(timeout=SAFETY_S)
            pytest.fail(f"server exited ({proc.returncode}): {proc.stderr.read().decode()[-2000:]}")
        assert httpx.get(f"{url}/health", timeout=SAFETY_S).json() == {"status": "ok"}  # no token
        yield url
    finally:
        os.close(read_end)
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    model = train_classical(tmp_path_factory.mktemp("http") / "m")
    with running_server(model, "--max-mb", "1") as url:
        yield url, model


def post(url: str, data: bytes, name: str = "x.tif", **kwargs) -> httpx.Response:
    return httpx.post(f"{url}/predict", files={"file": (name, data)}, timeout=60, **kwargs)


def post_batch(url: str, files: list[tuple[str, bytes]], group: str | None = None,
               **kwargs) -> httpx.Response:
    """``POST /predict/batch`` with ``files`` as ``(name, bytes)`` and an optional plate."""
    return httpx.post(f"{url}/predict/batch", files=[("files", f) for f in files],
                      data={} if group is None else {"group": group}, timeout=120, **kwargs)


def test_model_endpoint_reports_classes_and_input(server):
    body = httpx.get(f"{server[0]}/model").json()
    assert body["classes"] == ["big", "small"]
    assert body["input"]["channels"] == ["Gray"] and body["kind"] == "classical"
    assert body["normalization"] == {"method": "standard", "training_plates": [],
                                     "reference_statistics": False}


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


@pytest.mark.parametrize("payload, status, words", [
    (b"\x00garbage bytes, not an image", 415, "not a readable image"),
    (tiff_bytes(disk_image(20, 0, channels=3)[:, None]), 422, "3 channel(s)"),
    (tiff_bytes(np.zeros((8, 8), np.uint16)), 422, "8x8 px"),
    (tiff_bytes(np.zeros((4100, 20), np.uint8)), 422, "4100x20 px"),
    (b"", 400, "empty upload"),
])
def test_batch_answers_the_good_file_and_names_the_bad_one(server, payload, status, words):
    good = tiff_bytes(disk_image(8, 4)[0])
    response = post_batch(server[0], [("good.tif", good), ("bad.tif", payload)])
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["n_files"], body["n_failed"]) == (2, 1)
    ok, bad = body["results"]
    assert (ok["file"], ok["status"], ok["top"][0]["class"]) == ("good.tif", 200, "small")
    assert (bad["file"], bad["status"]) == ("bad.tif", status) and words in bad["detail"]
    assert "/tmp" not in bad["detail"]


def test_batch_over_the_body_limit_is_413(server):
    big = b"\x00" * (2 * 2**20)
    response = post_batch(server[0], [("a.tif", tiff_bytes(disk_image(8, 4)[0])), ("b.tif", big)])
    assert response.status_code == 413 and "exceeds limit" in response.json()["detail"]


def test_batch_equals_single_predictions_and_says_its_plate(server):
    url, model = server
    images = [tiff_bytes(disk_image(20 if i % 2 else 8, 30 + i)[0]) for i in range(3)]
    single = [post(url, im).json() for im in images]
    body = post_batch(url, [(f"{i}.tif", im) for i, im in enumerate(images)], group="P1").json()
    assert body["group"] == "P1" and [r["file"] for r in body["results"]] == ["0.tif", "1.tif", "2.tif"]
    assert [r["top"] for r in body["results"]] == [s["top"] for s in single]  # standard scaling
    assert {r["normalization"]["statistics"] for r in body["results"]} == {"fixed"}


def test_batch_of_too_many_files_is_413(server, tmp_path):
    image = tiff_bytes(disk_image(8, 1)[0])
    with running_server(server[1], "--max-files", "2") as url:
        files = [(f"{i}.tif", image) for i in range(3)]
        answer = post_batch(url, files)
        assert answer.status_code == 413
        assert "batch of 3 files exceeds limit 2" in answer.json()["detail"]
        assert post_batch(url, files[:2]).status_code == 200


class Answers:
    """How many requests of a burst have been answered (any status but 503), to wait for the next.

    A 503 means every prediction slot was held by a request of the burst then in flight; a slot
    is released before its response is sent, so once another request has been answered since
    this one was sent, a retry can find a free slot. Each retry thus waits for an answer newer
    than its last try: with ``n`` requests a client tries at most ``n`` times, and no clock is read.
    """

    def __init__(self) -> None:
        self.count = 0
        self.changed = threading.Condition()

    def seen(self) -> int:
        with self.changed:
            return self.count

    def one_more(self) -> None:
        with self.changed:
            self.count += 1
            self.changed.notify_all()

    def wait_past(self, count: int) -> None:
        with self.changed:
            if not self.changed.wait_for(lambda: self.count > count, timeout=SAFETY_S):
                pytest.fail(f"a 503 and no other request answered within {SAFETY_S} s")


def post_until_served(url: str, data: bytes, answers: Answers) -> httpx.Response:
    """What a client does with 503 + Retry-After (all prediction workers busy): wait, retry;
    here it waits for another request of the burst to be answered rather than a second."""
    while True:
        before = answers.seen()
        try:
            response = post(url, data)
        except BaseException:
            answers.one_more()  # a failed client leaves no other waiting on it
            raise
        if response.status_code != 503:
            answers.one_more()
            return response
        assert response.headers["retry-after"] == "1"
        assert "prediction workers are busy" in response.json()["detail"]
        answers.wait_past(before)


def test_burst_of_concurrent_requests_all_answered(server):
    data = [tiff_bytes(disk_image(20 if i % 2 else 8, i)[0]) for i in range(16)]
    with ThreadPoolExecutor(16) as pool:
        answers = Answers()
        responses = list(pool.map(lambda d: post_until_served(server[0], d, answers), data))
    assert [r.status_code for r in responses] == [200] * 16
    predictor = serve.load_predictor(server[1])
    samples = [Sample(id=f"s{i}", image=disk_image(20 if i % 2 else 8, i)) for i in range(16)]
    expected = predictor.predict_proba(samples)[1]
    got = [{t["class"]: t["probability"] for t in r.json()["top"]} for r in responses]
    assert [[g["big"], g["small"]] for g in got] == pytest.approx(np.array(expected))
