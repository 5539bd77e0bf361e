"""Assemble the sections, render the Jinja2 template, write report.html, summary.csv, summary.md."""

from __future__ import annotations

import logging
import re
from datetime import datetime, timezone
from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape

from cellcompare import atomic
from cellcompare.reports import attribution, cells, sections, tables, verdict
from cellcompare.reports.load import Results, load_results
from cellcompare.reports.theme import apply_theme

__all__ = ["build_report", "render_html", "ExternalResourceError"]

log = logging.getLogger(__name__)

# any attribute or CSS url() that would make the browser fetch something from the network
_EXTERNAL = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//"""
                       r"""|url\(\s*["']?\s*(?:https?:)?//""", re.IGNORECASE)


class ExternalResourceError(ValueError):
    """The rendered report would reference a resource outside the file."""


def _environment() -> Environment:
    env = Environment(loader=PackageLoader("cellcompare.reports", "templates"),
                      autoescape=select_autoescape(["html", "j2"]), undefined=StrictUndefined,
                      trim_blocks=True, lstrip_blocks=True)
    return env


def render_html(results: Results, options: sections.ReportOptions | None = None) -> tuple[str, str]:
    """Render the report of ``results``.

    Parameters
    ----------
    results : Results
        The loaded results directory.
    options : ReportOptions, optional
        Readability thresholds; the defaults suit 3 to 1,139 classes.

    Returns
    -------
    html : str
        The self-contained HTML document.
    markdown : str
        The summary table in Markdown.

    Raises
    ------
    ExternalResourceError
        If the rendered HTML references any network resource.
    """
    options = options or sections.ReportOptions()
    apply_theme()
    dataset = sections.dataset_section(results, options)
    methods = sections.methods_section(results, dataset.pop("dataset"), options)
    result = sections.results_section(results, options)
    markdown = tables.markdown_table(result["table"], results.metrics.get("top_k", 3))
    html = _environment().get_template("report.html.j2").render(
        title=f"Model comparison: {Path(results.root).resolve().name}",
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        results_dir=str(results.root), classes=results.classes,
        dataset=dataset, methods=methods, results=result,
        interpretation=sections.interpretation_section(results, options),
        box=verdict.first_box(results),
        why=attribution.explanation_section(results, sections.frame_rows),
        cells=cells.cells_section(results),
        options=options,
    )
    match = _EXTERNAL.search(html)
    if match:
        raise ExternalResourceError(
            f"report would load an external resource near {html[match.start():match.end() + 60]!r}")
    return html, markdown


def build_report(results_dir: str | Path, *, options: sections.ReportOptions | None = None) -> Path:
    """Write ``report.html``, ``summary.md`` and (if absent) ``summary.csv`` into ``results_dir``.

    Parameters
    ----------
    results_dir : str or Path
        A results directory written by ``comparison.run`` (needs ``metrics.json``).
    options : ReportOptions, optional
        Readability thresholds.

    Returns
    -------
    Path
        Path of the written ``report.html``.

    Examples
    --------
    A folder that no comparison wrote is refused, naming what is missing:

    >>> import tempfile
    >>> from cellcompare.reports import build_report
    >>> build_report(tempfile.mkdtemp())
    Traceback (most recent call last):
    ...
    cellcompare.reports.load.ResultsError: ...: no metrics.json found; is this a comparison ...

    A real report needs the results folder of a comparison run (``cellcompare compare``, a
    minute or more), which an example cannot afford, hence the skip:

    >>> build_report("results/demo")  # doctest: +SKIP
    PosixPath('results/demo/report.html')
    """
    results = load_results(results_dir)
    html, markdown = render_html(results, options)
    root = Path(results_dir)
    out = root / "report.html"
    atomic.write_text(out, html)
    atomic.write_text(root / "summary.md", markdown)
    if results.summary is None:
        with atomic.atomic_path(root / "summary.csv") as tmp:
            tables.summary_frame(results).to_csv(tmp)
        log.info("wrote %s", root / "summary.csv")
    log.info("wrote %s (%.1f kB)", out, out.stat().st_size / 1024)
    return out
