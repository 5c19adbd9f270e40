"""``<output>/report.html``: one self-contained page from a report.json, readable offline and as a CI artifact.

The report's data is embedded in the page and laid out by its own script: no server, no network,
nothing fetched but the report's own videos. A report may come from someone else (``pytest-vla
report``, ``merge``, ``compare --html``), so none of its strings can become markup or script: the
templates are filled in one pass, the data is JSON escaped for a <script> element and laid out as
text, and a video is linked only where its file lies under the page's directory.
"""

from __future__ import annotations

import html
import json
import math
import os
import re
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import quote

from pytest_vla.report.layout import OutputLayout
from pytest_vla.report.schema import STAGE_ORDER
from pytest_vla.report.writer import write_text_atomically

# Characters that could end or re-open markup in a <script> element, as \u escapes (as Django's
# json_script and Jinja's tojson do). json.dumps already escapes every non-ASCII character, U+2028,
# U+2029 and lone surrogates included.
_SCRIPT_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026"})
_URL_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:")


def write_html(report: dict[str, Any], directory: Path) -> Path:
    """Write ``directory/report.html`` for ``report`` (whose videos are relative to ``directory``)."""
    path = OutputLayout(directory).report_html
    write_text_atomically(path, render_html(report, directory))
    return path


def render_html(report: dict[str, Any], directory: Path) -> str:
    episodes = [
        {**row, "video_href": _href(row.get("video_path"), directory)} if isinstance(row, dict) else row
        for row in report["episodes"]
    ]
    aggregate = report["aggregate"]
    return _fill(
        "report.html",
        title=f"{report['suite']}: {aggregate['n_success']}/{aggregate['n_total']} episodes succeeded",
        data={**report, "episodes": episodes, "stage_order": STAGE_ORDER},
    )


def write_comparison_html(comparison: dict[str, Any], path: Path) -> Path:
    """A page of its own for ``pytest-vla compare --html``: the table a run's page shows against its baseline."""
    title = f"{comparison['verdict']}: {comparison['new']} vs {comparison['base']}"
    write_text_atomically(path, _fill("comparison.html", title=title, data=comparison))
    return path


def _fill(name: str, *, title: str, data: dict[str, Any]) -> str:
    """Template ``name`` with every placeholder replaced in one pass: no inserted text is read again.

    Both pages share the comparison's style and script, and the script's defensive formatting.
    """
    values = {
        "__TITLE__": _ascii(html.escape(title)),
        "__COMPARISON_CSS__": _template("comparison.css"),
        "__SHARED_JS__": _template("format.js") + _template("comparison.js"),
        "__DATA_JSON__": _in_script(data),
    }
    placeholders = re.compile("|".join(map(re.escape, values)))
    return placeholders.sub(lambda match: values[match.group()], _template(name))


def _template(name: str) -> str:
    return resources.files("pytest_vla.report").joinpath(f"templates/{name}").read_text(encoding="utf-8")


def _in_script(value: Any) -> str:
    """``value`` as JSON inside a <script> element, non-finite numbers as the strings JavaScript names them."""
    return json.dumps(_finite(value), allow_nan=False).translate(_SCRIPT_ESCAPES)


def _finite(value: Any) -> Any:
    """``value`` with NaN and infinities as "NaN", "Infinity" and "-Infinity": JSON has no such numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else "Infinity" if value > 0 else "-Infinity"
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def _ascii(text: str) -> str:
    """Markup-escaped text as ASCII, other characters as references: a lone surrogate cannot stop the write."""
    return text.encode("ascii", "xmlcharrefreplace").decode("ascii")


def _href(video_path: Any, directory: Path) -> str | None:
    """The link to a video from the page in ``directory``; None unless the file lies under that directory.

    A relative ``video_path`` is relative to ``directory``. Anything else (a URL, a path outside the
    directory, not a string) gets no link, so the page fetches nothing from elsewhere.
    """
    if not isinstance(video_path, str) or not video_path or _URL_SCHEME.match(video_path):
        return None
    base = os.path.abspath(directory)
    relative = os.path.relpath(os.path.normpath(os.path.join(base, video_path)), base)
    if relative == os.curdir or relative == os.pardir or relative.startswith(os.pardir + os.sep):
        return None
    try:
        name = os.fsencode(relative)
    except UnicodeEncodeError:  # a lone surrogate that no file's name can hold
        return None
    return quote(name)  # "#", "?" and "%" are parts of a file's name, not of a URL
