"""The ``pytest-vla`` command: tools around exports and reports that need no pytest run."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from pytest_vla.cli.compare import compare_command
from pytest_vla.cli.inspect import inspect_export, inspect_server
from pytest_vla.cli.reports import merge_command, report_command
from pytest_vla.cli.serve import serve_command
from pytest_vla.policy.choice import SERVER_PROTOCOLS
from pytest_vla.report.compare import DEFAULT_MARGIN_PP
from pytest_vla.suites import DEFAULT_SUITE

MAX_BATCH_SIZE = 1024
MAX_WAIT_MS = 10_000.0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pytest-vla", description="Tools for pytest-vla exports and reports.")
    commands = parser.add_subparsers(dest="command", required=True)
    inspect = commands.add_parser(
        "inspect",
        help="print an export's resolved binding, or a policy server's announcement, and run every check that "
        "needs no simulator",
        description="Print an export's resolved binding, or what a policy server announces and is sent, and run "
        "every check that needs no simulator (a server: one query on a synthetic observation).",
    )
    inspect.add_argument(
        "export",
        help="export directory (vla_export.json or a reflex export), 'demo', or a policy server's ws:// or wss:// URL",
    )
    inspect.add_argument(
        "--protocol", choices=SERVER_PROTOCOLS, default=SERVER_PROTOCOLS[0], help="a policy server's protocol"
    )
    inspect.add_argument(
        "--timeout", type=float, default=30.0, help="seconds a policy server may take to be ready, and to answer"
    )
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
    served = commands.add_parser(
        "serve",
        help="serve an export over vla-eval protocol v1 (vla-eval run and pytest-vla's clients), clients batched",
        description="Serve an export over vla-eval protocol v1 to vla-eval's clients (vla-eval run --server-url) and "
        "pytest-vla's (--vla-policy-server), batching the observations of several clients into one model call. "
        "GET /health answers once the model is loaded. SIGTERM or Ctrl-C stops it (exit 0).",
    )
    served.add_argument("export", help="export directory (vla_export.json or a reflex export), or 'demo'")
    served.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    served.add_argument("--port", type=int, default=8000, help="port to listen on, 0 for any free one (default: 8000)")
    served.add_argument(
        "--max-batch-size",
        type=int,
        default=1,
        metavar="B",
        help="observations of different clients run in one model call, at most B (default: 1, no batching); "
        "only for a model whose inputs have a dynamic first dimension",
    )
    served.add_argument(
        "--max-wait-ms",
        type=float,
        default=10.0,
        metavar="W",
        help="how long an observation may wait for others to fill its batch (default: 10)",
    )
    args = parser.parse_args(argv)
    if args.command == "serve":
        if not 0 <= args.port <= 65535:
            parser.error(f"--port must be in 0..65535, got {args.port}")
        if not 1 <= args.max_batch_size <= MAX_BATCH_SIZE:
            parser.error(f"--max-batch-size must be in 1..{MAX_BATCH_SIZE}, got {args.max_batch_size}")
        if not 0 <= args.max_wait_ms <= MAX_WAIT_MS:  # NaN fails too
            parser.error(f"--max-wait-ms must be in 0..{MAX_WAIT_MS}, got {args.max_wait_ms:g}")
        return serve_command(args.export, args.host, args.port, args.max_batch_size, args.max_wait_ms)
    if args.command == "compare":
        if not 0 <= args.margin < 100:
            parser.error(f"--margin must be in 0..100 percentage points, got {args.margin:g}")
        return compare_command(args.base, args.new, args.margin, args.json, args.html)
    if args.command == "report":
        return report_command(args.directory)
    if args.command == "merge":
        return merge_command(args.sources, args.output)
    if args.export.startswith(("ws://", "wss://")):
        if not 0 < args.timeout < float("inf"):
            parser.error(f"--timeout must be a positive number of seconds, got {args.timeout:g}")
        return inspect_server(args.export, args.protocol, args.suite, args.tasks, args.timeout)
    return inspect_export(args.export, args.suite, args.tasks)


if __name__ == "__main__":
    sys.exit(main())
