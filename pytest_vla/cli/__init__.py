"""The ``pytest-vla`` command: tools around exports and reports that need no pytest run."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from pytest_vla.cli.inspect import inspect_export
from pytest_vla.cli.reports import merge_command, report_command
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
    args = parser.parse_args(argv)
    if args.command == "report":
        return report_command(args.directory)
    if args.command == "merge":
        return merge_command(args.sources, args.output)
    return inspect_export(args.export, args.suite, args.tasks)


if __name__ == "__main__":
    sys.exit(main())
