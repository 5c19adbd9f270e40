"""``pytest-vla inspect``: an export's resolved binding, and every check that needs no simulator."""

from __future__ import annotations

import sys

from pytest_vla.cli.describe import describe_action, describe_binding
from pytest_vla.errors import ExportError, SuiteError, printable
from pytest_vla.export import resolve_export
from pytest_vla.export.files import file_digest
from pytest_vla.export.manifest import Manifest, load_manifest
from pytest_vla.policy.check import check_export
from pytest_vla.suites import BUILT_IN, built_in_suite, task_selection


def inspect_export(export: str, suite_name: str, task_list: str) -> int:
    suite = built_in_suite(suite_name)
    if suite is None:
        return _fail(f"--suite: unknown suite {suite_name!r} (built in: {', '.join(BUILT_IN)})")
    export_dir = resolve_export(export)
    try:
        manifest = load_manifest(export_dir)
    except ExportError as exc:
        return _fail(str(exc))
    _say(f"export   {export_dir}  (binding from {manifest.source})")
    digest = file_digest(manifest.model)
    _say(f"model    {manifest.model.name}  {digest['bytes']} bytes  sha256 {digest['sha256'][:16]}")
    try:
        tasks = suite.resolve_tasks(task_selection(task_list))
        checked = check_export(export_dir, suite, tasks)
    except (ExportError, SuiteError) as exc:
        _print_inputs(manifest, suite.render_size, {})  # what was resolved, before the failing check
        return _fail(str(exc))
    nodes = {node.name: f"{node.type} {list(node.shape)}" for node in checked.policy.session.get_inputs()}
    _print_inputs(manifest, suite.render_size, nodes)
    for line in checked.warnings:
        _say(f"warning  {line}")
    _say(
        f"checks   passed on {len(tasks)} {suite.name} task(s) with {checked.policy.provider}: every input bound "
        f"once, types and shapes agree, a synthetic observation gives finite actions {list(checked.actions_shape)}"
    )
    return 0


def _print_inputs(manifest: Manifest, render_size: tuple[int, int], model_types: dict[str, str]) -> None:
    """One line per model input: name, the model's type and shape (once loaded), source and preprocessing."""
    _say("inputs")
    name_width = max(len(binding.name) for binding in manifest.inputs)
    type_width = max((len(text) for text in model_types.values()), default=0)
    for binding in manifest.inputs:
        declared = model_types.get(binding.name, "")
        _say(f"  {binding.name:<{name_width}}  {declared:<{type_width}}  {describe_binding(binding, render_size)}")
    _say(f"action   {describe_action(manifest.action)}")


def _say(line: str) -> None:
    """Print a line whose names come from the export (its manifest and its model's nodes)."""
    print(printable(line))


def _fail(message: str) -> int:
    print(f"ERROR: {printable(message)}", file=sys.stderr)
    return 1
