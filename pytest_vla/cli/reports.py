"""``pytest-vla merge`` and ``pytest-vla report``: print what they made, or one line per reason they could not."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from pytest_vla.errors import ReportError, one_line, printable
from pytest_vla.report.html import write_html
from pytest_vla.report.layout import REPORT_NAME
from pytest_vla.report.merge import merge
from pytest_vla.report.reader import load_report
from pytest_vla.report.summary import summary_lines


def merge_command(sources: Sequence[Path], output: Path) -> int:
    try:
        result = merge(sources, output)
    except ReportError as exc:
        return refused("merge", exc)
    except OSError as exc:
        print(f"pytest-vla merge: {one_line(exc)}", file=sys.stderr)
        return 2
    for line in summary_lines(result.report, result.report_path):
        print(line)
    if result.junit_path is not None:
        print(f"junit: {printable(str(result.junit_path))}")
    for line in result.unfinished:
        print(line)
    if result.unfinished:
        missing = len(result.report["missing_episodes"])
        print(f"merged report is partial: {missing} episodes missing", file=sys.stderr)
        return 1
    return 0


def report_command(directory: Path) -> int:
    try:
        path = write_html(load_report(directory / REPORT_NAME), directory)
    except ReportError as exc:
        return refused("report", exc)
    except OSError as exc:
        print(f"pytest-vla report: {directory / REPORT_NAME}: {one_line(exc)}", file=sys.stderr)
        return 2
    print(printable(str(path)))
    return 0


def refused(command: str, exc: ReportError) -> int:
    """Exit status 2, each problem on a line of its own."""
    for problem in exc.problems:
        print(f"pytest-vla {command}: {problem}", file=sys.stderr)
    return 2
