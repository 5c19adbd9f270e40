"""The ``pytest-vla`` command: tools around an export that need no pytest run."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pytest_vla.errors import one_line
from pytest_vla.export import ExportError, file_digest, load_manifest, resolve_export
from pytest_vla.inspection import describe_action, describe_binding
from pytest_vla.preflight import check_export
from pytest_vla.suites import BUILT_IN, built_in_suite
from pytest_vla.suites.base import SuiteError


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="pytest-vla", description="Tools for pytest-vla exports.")
    commands = parser.add_subparsers(dest="command", required=True)
    inspect = commands.add_parser(
        "inspect",
        help="print an export's resolved binding and run every check that needs no simulator",
        description="Print an export's resolved binding and run every check that needs no simulator.",
    )
    inspect.add_argument("export", help="export directory (vla_export.json or a reflex export), or 'demo'")
    inspect.add_argument("--suite", default="libero", help="built-in suite (default: libero)")
    inspect.add_argument("--tasks", default="", help="as --vla-tasks (default: the suite's default tasks)")
    args = parser.parse_args(argv)
    return _inspect(args.export, args.suite, args.tasks)


def _inspect(export: str, suite_name: str, task_list: str) -> int:
    suite = built_in_suite(suite_name)
    if suite is None:
        return _fail(f"--suite: unknown suite {suite_name!r} (built in: {', '.join(BUILT_IN)})")
    export_dir = resolve_export(export)
    try:
        manifest = load_manifest(export_dir)
        print(f"export   {export_dir}  (binding from {manifest.source})")
        digest = file_digest(manifest.model)
        print(f"model    {manifest.model.name}  {digest['bytes']} bytes  sha256 {digest['sha256'][:16]}")
        print("inputs")
        width = max(len(binding.name) for binding in manifest.inputs)
        for binding in manifest.inputs:
            print(f"  {binding.name:<{width}}  {describe_binding(binding, suite.render_size)}")
        print(f"action   {describe_action(manifest.action)}")
        tasks = suite.resolve_tasks([entry.strip() for entry in task_list.split(",") if entry.strip()])
        checked = check_export(export_dir, suite, tasks)
    except (ExportError, SuiteError) as exc:
        return _fail(str(exc))
    except Exception as exc:  # an unexpected library error still gets one line, not a traceback
        return _fail(f"{export_dir}: {one_line(exc)}")
    model_inputs = {node.name: node for node in checked.policy.session.get_inputs()}
    print("model inputs")
    for name, node in model_inputs.items():
        print(f"  {name:<{width}}  {node.type} {list(node.shape)}")
    for line in checked.warnings:
        print(f"warning  {line}")
    print(
        f"checks   passed on {len(tasks)} {suite.name} task(s) with {checked.policy.provider}: every input bound "
        f"once, types and shapes agree, a synthetic observation gives finite actions {list(checked.actions_shape)}"
    )
    return 0


def _fail(message: str) -> int:
    print(f"ERROR: {message}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
