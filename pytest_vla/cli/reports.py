"""``pytest-vla merge`` and ``pytest-vla report``: print what they made, or say in one line why they could not."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

from pytest_vla.errors import ReportError, one_line
from pytest_vla.report.html import write_html
from pytest_vla.report.layout import REPORT_NAME
from pytest_vla.report.merge import merge
from pytest_vla.report.reader import load_report
from pytest_vla.report.summary import summary_lines


def merge_command(sources: Sequence[Path], output: Path) -> int:
    try:
        result = merge(sources, output)
    except (ReportError, OSError) as exc:
        print(f"pytest-vla merge: {exc}", file=sys.stderr)
        return 2
    for line in summary_lines(result.report, result.report_path):
        print(line)
    if result.junit_path is not None:
        print(f"junit: {result.junit_path}")
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
    except (ReportError, OSError, KeyError, TypeError) as exc:
        print(f"pytest-vla report: {directory / REPORT_NAME}: {one_line(exc)}", file=sys.stderr)
        return 2
    print(path)
    return 0
