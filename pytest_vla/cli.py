"""The ``pytest-vla`` command: tools around an export that need no pytest run."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pytest_vla.export import ExportError, Manifest, file_digest, load_manifest, resolve_export
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
    except ExportError as exc:
        return _fail(str(exc))
    print(f"export   {export_dir}  (binding from {manifest.source})")
    digest = file_digest(manifest.model)
    print(f"model    {manifest.model.name}  {digest['bytes']} bytes  sha256 {digest['sha256'][:16]}")
    try:
        tasks = suite.resolve_tasks([entry.strip() for entry in task_list.split(",") if entry.strip()])
        checked = check_export(export_dir, suite, tasks)
    except (ExportError, SuiteError) as exc:
        _print_inputs(manifest, suite.render_size, {})  # what was resolved, before the failing check
        return _fail(str(exc))
    nodes = {node.name: f"{node.type} {list(node.shape)}" for node in checked.policy.session.get_inputs()}
    _print_inputs(manifest, suite.render_size, nodes)
    for line in checked.warnings:
        print(f"warning  {line}")
    print(
        f"checks   passed on {len(tasks)} {suite.name} task(s) with {checked.policy.provider}: every input bound "
        f"once, types and shapes agree, a synthetic observation gives finite actions {list(checked.actions_shape)}"
    )
    return 0


def _print_inputs(manifest: Manifest, render_size: tuple[int, int], model_types: dict[str, str]) -> None:
    """One line per model input: name, the model's type and shape (once loaded), source and preprocessing."""
    print("inputs")
    name_width = max(len(binding.name) for binding in manifest.inputs)
    type_width = max((len(text) for text in model_types.values()), default=0)
    for binding in manifest.inputs:
        declared = model_types.get(binding.name, "")
        print(f"  {binding.name:<{name_width}}  {declared:<{type_width}}  {describe_binding(binding, render_size)}")
    print(f"action   {describe_action(manifest.action)}")


def _fail(message: str) -> int:
    print(f"ERROR: {message}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
