"""Open a built report in headless Chromium: every image loads, no console errors, a screenshot;
and ``cellcompare report --pdf`` prints it to a PDF with pages.

Talks to Chromium over the DevTools protocol (``websockets`` sync client). Skips with a reason
when Chromium or ``websockets`` is absent; CI installs Debian's ``chromium``.
"""

from __future__ import annotations

import base64
import http.client
import itertools
import json
import os
import re
import shutil
import queue
import subprocess
import threading
import time
from pathlib import Path

import pytest
from test_reports_build import make_results_dir

from cellcompare.cli import main
from cellcompare.reports import build_report
from cellcompare.reports.pdf import count_pages

CHROMIUM = next((p for p in (os.environ.get("CHROMIUM"), "/usr/bin/chromium",
                             shutil.which("chromium"), shutil.which("chromium-browser")) if p
                 and Path(p).is_file()), None)
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--no-first-run", "--disable-component-update", "--disable-sync",
         "--remote-debugging-port=0", "--window-size=1280,900"]
TIMEOUT = 30.0


class DevTools:
    """Minimal DevTools client for one page target: commands, and the events seen meanwhile."""

    def __init__(self, ws):
        self.ws = ws
        self.ids = itertools.count(1)
        self.events: list[dict] = []

    def call(self, method: str, **params) -> dict:
        msg_id = next(self.ids)
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=TIMEOUT))
            if message.get("id") == msg_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def wait_for(self, method: str) -> dict:
        for event in self.events:
            if event.get("method") == method:
                return event
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            message = json.loads(self.ws.recv(timeout=TIMEOUT))
            self.events.append(message)
            if message.get("method") == method:
                return message
        raise TimeoutError(f"no {method} within {TIMEOUT} s")


def _devtools_port(proc: subprocess.Popen) -> int:
    """The port of Chromium's "DevTools listening on ws://HOST:PORT/..." line on stderr.

    A reader thread hands stderr's lines over a queue (and keeps draining it afterwards), so the
    wait is on the line itself; ``TIMEOUT`` only bounds a Chromium that hangs silently.
    """
    lines: queue.Queue = queue.Queue()

    def read() -> None:
        for line in proc.stderr:
            lines.put(line)
        lines.put(None)  # end of stderr: Chromium exited

    threading.Thread(target=read, daemon=True).start()
    seen = []
    while True:
        try:
            line = lines.get(timeout=TIMEOUT)
        except queue.Empty:
            raise TimeoutError(f"chromium printed no DevTools address within {TIMEOUT} s: {seen}") from None
        if line is None:
            raise RuntimeError(f"chromium exited with {proc.wait()}: {''.join(seen)}")
        seen.append(line)
        found = re.search(r"DevTools listening on ws://[^/]+:(\d+)/", line)
        if found:
            return int(found.group(1))


@pytest.fixture
def page(tmp_path):
    if CHROMIUM is None:
        pytest.skip("Chromium not installed (apt-get install chromium); CI installs it")
    client = pytest.importorskip("websockets.sync.client",
                                 reason="websockets is needed for DevTools")
    profile = tmp_path / "profile"
    proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        port = _devtools_port(proc)
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=TIMEOUT)
        conn.request("PUT", "/json/new?about:blank")
        target = json.loads(conn.getresponse().read())
        with client.connect(target["webSocketDebuggerUrl"], max_size=None,
                            open_timeout=TIMEOUT) as ws:
            tools = DevTools(ws)
            for domain in ("Page", "Runtime", "Log"):
                tools.call(f"{domain}.enable")
            yield tools
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_report_renders_in_chromium(page, tmp_path):
    report = build_report(make_results_dir(tmp_path / "results"))
    page.events.clear()
    page.call("Page.navigate", url=report.resolve().as_uri())
    page.wait_for("Page.loadEventFired")
    images = page.call("Runtime.evaluate", returnByValue=True, expression=(
        "Array.from(document.images).map(i => ({alt: i.alt, ok: i.complete && i.naturalWidth > 0}))"
    ))["result"]["value"]
    assert len(images) >= 6
    assert [i["alt"] for i in images if not i["ok"]] == []
    alts = {i["alt"] for i in images}
    assert {"Where resnet18 looks", "What xgboost's top features measure",
            "Training curves: resnet18"} <= alts
    errors = [e["params"] for e in page.events
              if (e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] == "error")
              or e.get("method") == "Runtime.exceptionThrown"
              or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")]
    assert errors == []
    height = page.call("Runtime.evaluate", returnByValue=True,
                       expression="document.documentElement.scrollHeight")["result"]["value"]
    shot = page.call("Page.captureScreenshot", format="png", captureBeyondViewport=True,
                     clip={"x": 0, "y": 0, "width": 1280, "height": min(height, 12000), "scale": 1})
    png = base64.b64decode(shot["data"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    out = Path(os.environ.get("REPORTS_SCREENSHOT_DIR", tmp_path))
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.png").write_bytes(png)


def test_report_cli_prints_a_pdf_with_pages(tmp_path, capsys, monkeypatch):
    if CHROMIUM is None:
        pytest.skip("Chromium not installed (apt-get install chromium); CI installs it")
    monkeypatch.setenv("CHROMIUM", CHROMIUM)
    root = make_results_dir(tmp_path / "results")
    assert main(["report", str(root), "--pdf"]) == 0
    pdf = root / "report.pdf"
    assert capsys.readouterr().out.split() == [str(root / "report.html"), str(pdf)]
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF") and data.rstrip().endswith(b"%%EOF")
    pages = count_pages(data)
    assert pages > 0
    # the root of the page tree (the largest /Count of a /Pages object) counts the same pages
    counts = [int(n) for obj in re.findall(rb"obj(.*?)endobj", data, re.DOTALL)
              if re.search(rb"/Type\s*/Pages\b", obj) for n in re.findall(rb"/Count\s+(\d+)", obj)]
    assert max(counts) == pages
