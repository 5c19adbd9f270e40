"""The ``pytest-vla`` command: tools around an export that need no pytest run."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pytest_vla.cli.inspect import inspect_export
from pytest_vla.suites import DEFAULT_SUITE


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pytest-vla", description="Tools for pytest-vla exports.")
    commands = parser.add_subparsers(dest="command", required=True)
    inspect = commands.add_parser(
        "inspect",
        help="print an export's resolved binding and run every check that needs no simulator",
        description="Print an export's resolved binding and run every check that needs no simulator.",
    )
    inspect.add_argument("export", help="export directory (vla_export.json or a reflex export), or 'demo'")
    inspect.add_argument("--suite", default=DEFAULT_SUITE, help=f"built-in suite (default: {DEFAULT_SUITE})")
    inspect.add_argument("--tasks", default="", help="as --vla-tasks (default: the suite's default tasks)")
    args = parser.parse_args(argv)
    return inspect_export(args.export, args.suite, args.tasks)


if __name__ == "__main__":
    sys.exit(main())
