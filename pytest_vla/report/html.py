"""``<output>/report.html``: one self-contained page from a report.json, readable offline and as a CI artifact.

The report's data is embedded in the page and laid out by its own script: no server, no network,
nothing fetched. Videos are linked relative to the page, so the output directory can be moved or
uploaded as a whole.
"""

from __future__ import annotations

import html
import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

from pytest_vla.report.writer import write_text_atomically

HTML_NAME = "report.html"


def write_html(report: dict[str, Any], directory: Path) -> Path:
    """Write ``directory/report.html`` for ``report`` (whose videos are relative to ``directory``)."""
    path = directory / HTML_NAME
    write_text_atomically(path, render_html(report, directory))
    return path


def render_html(report: dict[str, Any], directory: Path) -> str:
    episodes = [{**row, "video_href": _href(row.get("video_path"), directory)} for row in report["episodes"]]
    data = json.dumps({**report, "episodes": episodes})
    aggregate = report["aggregate"]
    title = f"{report['suite']}: {aggregate['n_success']}/{aggregate['n_total']} episodes succeeded"
    page = _with_comparison(_template("report.html"))
    return page.replace("__TITLE__", html.escape(title)).replace("__REPORT_JSON__", _in_script(data))


def write_comparison_html(comparison: dict[str, Any], path: Path) -> Path:
    """A page of its own for ``pytest-vla compare --html``: the table a run's page shows against its baseline."""
    title = f"{comparison['verdict']}: {comparison['new']} vs {comparison['base']}"
    page = _with_comparison(_template("comparison.html"))
    page = page.replace("__TITLE__", html.escape(title)).replace(
        "__COMPARISON_JSON__", _in_script(json.dumps(comparison))
    )
    write_text_atomically(path, page)
    return path


def _with_comparison(page: str) -> str:
    """A page with the comparison's style and script, which the run's page and ``compare --html`` share."""
    return page.replace("__COMPARISON_CSS__", _template("comparison.css")).replace(
        "__COMPARISON_JS__", _template("comparison.js")
    )


def _template(name: str) -> str:
    return resources.files("pytest_vla.report").joinpath(f"templates/{name}").read_text(encoding="utf-8")


def _in_script(data: str) -> str:
    """JSON placed in a <script> element: "</" would end the element."""
    return data.replace("</", "<\\/")


def _href(video_path: str | None, directory: Path) -> str | None:
    if not video_path:
        return None
    return Path(os.path.relpath(video_path, directory)).as_posix()
