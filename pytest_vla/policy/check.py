"""Every check of an export that needs no simulator: the binding, the model, each task's shapes, one query."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pytest_vla.errors import ExportError
from pytest_vla.export.manifest import Manifest, load_manifest
from pytest_vla.policy.feeds import binding_shapes, synthetic_observation
from pytest_vla.policy.onnx import OnnxPolicy
from pytest_vla.suites.base import Suite, TaskSpec


@dataclass
class CheckedExport:
    manifest: Manifest
    policy: OnnxPolicy
    warnings: list[str]  # worth telling, not worth stopping for (truncated instructions)
    actions_shape: tuple[int, ...]  # what the synthetic observation's query returned


def check_export(export_dir: Path, suite: Suite, tasks: list[TaskSpec]) -> CheckedExport:
    """Every check that needs no simulator: the binding, the model, each task's shapes, one synthetic query.

    Raises :class:`ExportError` naming the culprit in one line.
    """
    manifest = load_manifest(export_dir)
    if manifest.action.dim != suite.action_dim:
        raise ExportError(
            f"{manifest.where}: action.dim is {manifest.action.dim} but {suite.name} actions have "
            f"{suite.action_dim} values"
        )
    policy = OnnxPolicy(manifest)
    for task in tasks:
        policy.check_shapes(binding_shapes(manifest, suite, task), task)
    warnings = policy.truncated_instructions(tasks, suite.state_dim)
    actions = policy.check(tasks[0], synthetic_observation(suite, tasks[0], manifest.cameras))
    return CheckedExport(manifest, policy, warnings, actions.shape)
