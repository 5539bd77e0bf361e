"""A PDF of the report for lab meetings, printed by headless Chromium from report.html."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from cellcompare import atomic

__all__ = ["PdfError", "find_browser", "print_pdf", "count_pages"]

log = logging.getLogger(__name__)

#: Tried in order when neither ``browser=`` nor ``$CHROMIUM`` names one.
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


class PdfError(ValueError):
    """The PDF could not be printed (no browser, the browser failed, or it wrote no PDF)."""


def find_browser(browser: str | None = None) -> str:
    """Path of the Chromium-family browser to print with.

    Parameters
    ----------
    browser : str, optional
        An explicit path or command name; else ``$CHROMIUM``, else the first of
        :data:`BROWSERS` found on ``PATH``.

    Raises
    ------
    PdfError
        No browser was found.
    """
    candidates = [browser] if browser else [os.environ.get("CHROMIUM"), *BROWSERS]
    for name in filter(None, candidates):
        path = shutil.which(name) or (name if Path(name).is_file() else None)
        if path:
            return path
    raise PdfError(f"no headless browser found (tried {[c for c in candidates if c]}); install "
                   "Chromium (apt-get install chromium) or set $CHROMIUM to its path")


def count_pages(pdf: bytes) -> int:
    """Number of page objects (``/Type /Page``) in a PDF's bytes."""
    import re

    return len(re.findall(rb"/Type\s*/Page(?![s\w])", pdf))


def print_pdf(html: str | Path, pdf: str | Path | None = None, *, browser: str | None = None,
              timeout: float = 180.0) -> Path:
    """Print a self-contained HTML file to PDF with headless Chromium.

    Parameters
    ----------
    html : str or Path
        The report (``report.html``).
    pdf : str or Path, optional
        Output path; ``report.pdf`` beside ``html`` by default.
    browser : str, optional
        Browser to use (see :func:`find_browser`).
    timeout : float
        Seconds before the browser is stopped.

    Returns
    -------
    Path
        The written PDF (replaced atomically).

    Raises
    ------
    PdfError
        ``html`` does not exist, no browser, the browser failed or timed out, or its output is
        not a PDF with at least one page.
    """
    html = Path(html)
    if not html.is_file():
        raise PdfError(f"{html}: no such report to print")
    pdf = Path(pdf) if pdf is not None else html.with_suffix(".pdf")
    exe = find_browser(browser)
    with tempfile.TemporaryDirectory(prefix="cellcompare-pdf-") as tmp:
        target = Path(tmp) / "report.pdf"
        command = [exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                   "--disable-background-networking", "--disable-component-update",
                   "--disable-sync", f"--user-data-dir={Path(tmp) / 'profile'}",
                   "--no-pdf-header-footer", "--run-all-compositor-stages-before-draw",
                   f"--print-to-pdf={target}", html.resolve().as_uri()]
        try:
            done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise PdfError(f"{exe} did not print {html} within {timeout:.0f} s") from exc
        data = target.read_bytes() if target.is_file() else b""
        if not data.startswith(b"%PDF") or count_pages(data) == 0:
            tail = "\n".join(done.stderr.strip().splitlines()[-5:])
            raise PdfError(f"{exe} wrote no PDF pages for {html} (exit {done.returncode}): {tail}")
    with atomic.atomic_path(pdf) as out:
        Path(out).write_bytes(data)
    log.info("wrote %s (%d pages, %.0f kB)", pdf, count_pages(data), len(data) / 1024)
    return pdf
