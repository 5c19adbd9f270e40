"""``pytest-vla compare BASE NEW``: the paired comparison of two runs, printed, and written as JSON or a page."""

from __future__ import annotations

import sys
from pathlib import Path

from pytest_vla.cli.reports import refused
from pytest_vla.errors import ReportError, one_line, printable
from pytest_vla.report.compare import Verdict, compare, comparison_lines, read_comparable
from pytest_vla.report.html import write_comparison_html
from pytest_vla.report.writer import write_json_atomically


def compare_command(base: Path, new: Path, margin_pp: float, json_path: Path | None, html_path: Path | None) -> int:
    """0 unless NEW regressed overall (1); 2 when the two cannot be compared."""
    try:
        comparison = compare(
            read_comparable(base), read_comparable(new), margin=margin_pp / 100, base_name=str(base), new_name=str(new)
        )
    except ReportError as exc:
        return refused("compare", exc)
    except OSError as exc:
        print(f"pytest-vla compare: {one_line(exc)}", file=sys.stderr)
        return 2
    print(printable(f"BASE: {base}"))
    print(printable(f"NEW:  {new}"))
    for line in comparison_lines(comparison):
        print(line)
    written = comparison.to_json()
    if json_path is not None:
        write_json_atomically(json_path, written)
        print(printable(f"json: {json_path}"))
    if html_path is not None:
        write_comparison_html(written, html_path)
        print(printable(f"html: {html_path}"))
    return 1 if comparison.overall.verdict is Verdict.REGRESSED else 0
