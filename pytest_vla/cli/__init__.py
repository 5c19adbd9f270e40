"""The ``pytest-vla`` command: tools around exports and reports that need no pytest run."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from pytest_vla.cli.compare import compare_command
from pytest_vla.cli.inspect import inspect_export
from pytest_vla.cli.reports import merge_command, report_command
from pytest_vla.report.compare import DEFAULT_MARGIN_PP
from pytest_vla.suites import DEFAULT_SUITE


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pytest-vla", description="Tools for pytest-vla exports and reports.")
    commands = parser.add_subparsers(dest="command", required=True)
    inspect = commands.add_parser(
        "inspect",
        help="print an export's resolved binding and run every check that needs no simulator",
        description="Print an export's resolved binding and run every check that needs no simulator.",
    )
    inspect.add_argument("export", help="export directory (vla_export.json or a reflex export), or 'demo'")
    inspect.add_argument("--suite", default=DEFAULT_SUITE, help=f"built-in suite (default: {DEFAULT_SUITE})")
    inspect.add_argument("--tasks", default="", help="as --vla-tasks (default: the suite's default tasks)")
    merge = commands.add_parser(
        "merge",
        help="merge the shards of one run (--vla-shard) into one report.json and junit.xml",
        description="Merge the shards of one run into DIR/report.json (the report one unsharded run gives) "
        "and DIR/junit.xml. Exit 0 when every episode is there, 1 when a shard is missing or partial, 2 when "
        "the sources cannot be merged.",
    )
    merge.add_argument("--output", required=True, type=Path, metavar="DIR", help="where the merged files go")
    merge.add_argument(
        "sources", nargs="+", type=Path, help="shard --vla-output directories, report.json or JUnit XML files"
    )
    page = commands.add_parser(
        "report",
        help="write DIR/report.html from DIR/report.json (a run's --vla-output)",
        description="Write DIR/report.html, the static page a run writes at its end, from DIR/report.json alone.",
    )
    page.add_argument("directory", type=Path, metavar="DIR", help="a run's --vla-output directory")
    paired = commands.add_parser(
        "compare",
        help="is NEW better than BASE? episodes paired by task and init state, exact McNemar tests",
        description="Pair the episodes of two runs (same seed and protocol) by task and episode index, a perturbed "
        "task with its clean one, and test per task, family and overall. Exit 1 when NEW regressed overall, 0 "
        "otherwise, 2 when the two cannot be compared.",
    )
    paired.add_argument("base", type=Path, metavar="BASE", help="report.json or a run's --vla-output directory")
    paired.add_argument("new", type=Path, metavar="NEW", help="report.json or a run's --vla-output directory")
    paired.add_argument(
        "--margin",
        type=float,
        default=DEFAULT_MARGIN_PP,
        metavar="PP",
        help=f"differences within PP percentage points count as held (default: {DEFAULT_MARGIN_PP:g})",
    )
    paired.add_argument("--json", type=Path, metavar="PATH", help="write every row of the comparison to PATH")
    paired.add_argument("--html", type=Path, metavar="PATH", help="write the comparison as a static page to PATH")
    args = parser.parse_args(argv)
    if args.command == "compare":
        if not 0 <= args.margin < 100:
            parser.error(f"--margin must be in 0..100 percentage points, got {args.margin:g}")
        return compare_command(args.base, args.new, args.margin, args.json, args.html)
    if args.command == "report":
        return report_command(args.directory)
    if args.command == "merge":
        return merge_command(args.sources, args.output)
    return inspect_export(args.export, args.suite, args.tasks)


if __name__ == "__main__":
    sys.exit(main())
