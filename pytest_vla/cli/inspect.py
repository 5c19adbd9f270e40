"""``pytest-vla inspect``: an export's resolved binding, or a policy server's announcement, and every check that
needs no simulator."""

from __future__ import annotations

import json
import sys

from pytest_vla.cli.describe import describe_action, describe_binding, describe_state
from pytest_vla.errors import ExportError, PolicyError, SuiteError, printable
from pytest_vla.export import resolve_export
from pytest_vla.export.files import file_digest
from pytest_vla.export.manifest import Manifest, load_manifest
from pytest_vla.policy.check import check_policy
from pytest_vla.policy.onnx import OnnxPolicy
from pytest_vla.policy.served import connect_policy
from pytest_vla.suites import installed_suite, task_selection, unknown_suite
from pytest_vla.suites.base import Suite


def inspect_export(export: str, suite_name: str, task_list: str) -> int:
    try:
        suite = installed_suite(suite_name)
    except SuiteError as exc:
        return _fail(str(exc))
    if suite is None:
        return _fail(unknown_suite("--suite", suite_name))
    export_dir = resolve_export(export)
    try:
        manifest = load_manifest(export_dir)
    except ExportError as exc:
        return _fail(str(exc))
    _say(f"export   {export_dir}  (binding from {manifest.source})")
    digest = file_digest(manifest.model)
    _say(f"model    {manifest.model.name}  {digest['bytes']} bytes  sha256 {digest['sha256'][:16]}")
    policy: OnnxPolicy | None = None
    try:
        tasks = suite.resolve_tasks(task_selection(task_list))
        policy = OnnxPolicy(manifest)
        checked = check_policy(policy, suite, tasks)
    except (ExportError, PolicyError, SuiteError) as exc:
        nodes = {} if policy is None else _model_inputs(policy)
        _print_inputs(manifest, suite, nodes)  # what was resolved, before the failing check
        return _fail(str(exc))
    nodes = _model_inputs(policy)
    _print_inputs(manifest, suite, nodes)
    for line in checked.warnings:
        _say(f"warning  {line}")
    _say(
        f"checks   passed on {len(tasks)} {suite.name} task(s) with {policy.provider}: every input bound "
        f"once, types and shapes agree, a synthetic observation gives finite actions "
        f"[{checked.steps_per_query}, {suite.action_dim}]"
    )
    return 0


def inspect_server(url: str, protocol: str, suite_name: str, task_list: str, timeout_s: float) -> int:
    """What a policy server announces, what the suite's client of that protocol sends it, one synthetic query."""
    try:
        suite = installed_suite(suite_name)
    except SuiteError as exc:
        return _fail(str(exc))
    if suite is None:
        return _fail(unknown_suite("--suite", suite_name))
    try:
        tasks = suite.resolve_tasks(task_selection(task_list))
        policy = connect_policy(url, protocol, suite, query_timeout_s=timeout_s, ready_timeout_s=timeout_s)
    except (PolicyError, SuiteError) as exc:
        return _fail(str(exc))
    try:
        identity = policy.identity()
        _say(f"server   {url}  ({protocol})")
        _say(f"answers  {json.dumps(identity['server'], sort_keys=True)[:2000]}")
        _say(f"sends    cameras {', '.join(policy.cameras) or 'none'}; {describe_state(policy.state, suite)}")
        checked = check_policy(policy, suite, tasks)
    except (PolicyError, SuiteError) as exc:
        return _fail(str(exc))
    finally:
        policy.close()
    for line in checked.warnings:
        _say(f"warning  {line}")
    _say(
        f"checks   passed on {len(tasks)} {suite.name} task(s): the server is ready, speaks {protocol}, and a "
        f"synthetic observation gives finite actions [{checked.steps_per_query}, {suite.action_dim}]"
    )
    return 0


def _model_inputs(policy: OnnxPolicy) -> dict[str, str]:
    return {node.name: f"{node.type} {list(node.shape)}" for node in policy.session.get_inputs()}


def _print_inputs(manifest: Manifest, suite: Suite, model_types: dict[str, str]) -> None:
    """One line per model input: name, the model's type and shape (once loaded), source and preprocessing."""
    _say("inputs")
    name_width = max(len(binding.name) for binding in manifest.inputs)
    type_width = max((len(text) for text in model_types.values()), default=0)
    for binding in manifest.inputs:
        declared = model_types.get(binding.name, "")
        _say(f"  {binding.name:<{name_width}}  {declared:<{type_width}}  {describe_binding(binding, suite)}")
    _say(f"action   {describe_action(manifest.action)}")


def _say(line: str) -> None:
    """Print a line whose names come from the export (its manifest and its model's nodes)."""
    print(printable(line))


def _fail(message: str) -> int:
    print(f"ERROR: {printable(message)}", file=sys.stderr)
    return 1
