"""Checks that run on the controller before any simulator starts, and the plan they produce.

Each failure is a :class:`pytest.UsageError` with one line that names the culprit, so a broken
export or setup costs seconds, not hours.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

import pytest

from pytest_vla.bindings import binding_shapes, synthetic_observation
from pytest_vla.export import ExportError, Manifest, load_manifest
from pytest_vla.options import Settings
from pytest_vla.plan import EvalPlan
from pytest_vla.policy import OnnxPolicy
from pytest_vla.suites.base import Suite, SuiteError, TaskSpec

# The policy the preflight loaded: the process that also runs the episodes (no xdist) reuses it
# instead of loading a possibly multi-GB model a second time.
PREFLIGHT_POLICY_KEY = pytest.StashKey[OnnxPolicy]()


class VlaWarning(UserWarning):
    """Something an evaluation runs with but a user should know (e.g. a truncated instruction)."""


def make_suite(config: pytest.Config, name: str) -> Suite:
    suite = config.hook.pytest_vla_make_suite(config=config, name=name)
    if suite is None:
        raise pytest.UsageError(f"--vla-suite: unknown suite {name!r} (built in: 'libero')")
    return suite


def run_preflight(config: pytest.Config, settings: Settings, *, explicit_paths: bool) -> EvalPlan:
    suite = make_suite(config, settings.suite)
    if not 1 <= settings.num_episodes <= suite.max_episodes:
        raise pytest.UsageError(
            f"--vla-num-episodes must be in 1..{suite.max_episodes} ({suite.name} ships "
            f"{suite.max_episodes} init states per task), got {settings.num_episodes}"
        )
    _check_writable(settings)
    try:
        tasks = suite.resolve_tasks(settings.tasks)
        checked = check_export(settings.export, suite, tasks)
        config.stash[PREFLIGHT_POLICY_KEY] = checked.policy
        for line in checked.warnings:
            config.issue_config_time_warning(VlaWarning(line), stacklevel=2)
        if checked.manifest.cameras:
            suite.check_rendering()
    except (ExportError, SuiteError) as exc:
        raise pytest.UsageError(str(exc)) from None
    manifest, policy = checked.manifest, checked.policy
    return EvalPlan(
        suite=suite.name,
        export=settings.export,
        output=settings.output,
        tasks=tuple(tasks),
        num_episodes=settings.num_episodes,
        seed=settings.seed,
        max_steps_override=settings.max_steps,
        save_trajectories=settings.save_trajectories,
        episode_timeout_override=settings.episode_timeout,
        cameras=manifest.cameras,
        provider=policy.provider,
        collect_paths=explicit_paths,
    )


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


def _check_writable(settings: Settings) -> None:
    try:
        settings.output.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=settings.output, prefix=".write-check-"):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise pytest.UsageError(f"--vla-output {settings.output} is not writable: {reason}") from None
