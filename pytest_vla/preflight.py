"""Checks that run on the controller before any simulator starts, and the plan they produce.

Each failure is a :class:`pytest.UsageError` with one line that names the culprit, so a broken
export or setup costs seconds, not hours.
"""

from __future__ import annotations

import tempfile

import pytest

from pytest_vla.bindings import binding_shapes, synthetic_observation
from pytest_vla.export import ExportError, load_manifest
from pytest_vla.options import Settings
from pytest_vla.plan import EvalPlan
from pytest_vla.policy import OnnxPolicy
from pytest_vla.suites.base import Suite, SuiteError


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
        manifest = load_manifest(settings.export)
        if manifest.action.dim != suite.action_dim:
            raise ExportError(
                f"{manifest.directory / 'vla_export.json'}: action.dim is {manifest.action.dim} but "
                f"{suite.name} actions have {suite.action_dim} values"
            )
        tasks = suite.resolve_tasks(settings.tasks)
        policy = OnnxPolicy(manifest)
        for task in tasks:
            policy.check_shapes(binding_shapes(manifest, suite, task), task)
        for line in policy.truncated_instructions(tasks):
            config.issue_config_time_warning(VlaWarning(line), stacklevel=2)
        policy.check(tasks[0], synthetic_observation(suite, tasks[0], manifest.cameras))
        if manifest.cameras:
            suite.check_rendering()
    except (ExportError, SuiteError) as exc:
        raise pytest.UsageError(str(exc)) from None
    return EvalPlan(
        suite=suite.name,
        export=settings.export,
        output=settings.output,
        tasks=tuple(tasks),
        num_episodes=settings.num_episodes,
        seed=settings.seed,
        max_steps_override=settings.max_steps,
        save_trajectories=settings.save_trajectories,
        cameras=manifest.cameras,
        provider=policy.provider,
        collect_paths=explicit_paths,
    )


def _check_writable(settings: Settings) -> None:
    try:
        settings.output.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=settings.output, prefix=".write-check-"):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise pytest.UsageError(f"--vla-output {settings.output} is not writable: {reason}") from None
