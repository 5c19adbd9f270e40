"""Checks that run on the controller before any simulator starts, and the plan they produce.

Each failure is a :class:`pytest.UsageError` with one line that names the culprit, so a broken
export or setup costs seconds, not hours.
"""

from __future__ import annotations

import tempfile
from importlib import metadata

import pytest

from pytest_vla.controller.options import Settings
from pytest_vla.errors import ExportError, SuiteError, VlaWarning
from pytest_vla.plan import EvalPlan
from pytest_vla.policy.check import check_export
from pytest_vla.policy.onnx import OnnxPolicy
from pytest_vla.suites import BUILT_IN
from pytest_vla.suites.base import Suite


def make_suite(config: pytest.Config, name: str) -> Suite:
    suite = config.hook.pytest_vla_make_suite(config=config, name=name)
    if suite is None:
        raise pytest.UsageError(f"--vla-suite: unknown suite {name!r} (built in: {', '.join(map(repr, BUILT_IN))})")
    return suite


def run_preflight(
    config: pytest.Config, suite: Suite, settings: Settings, *, explicit_paths: bool
) -> tuple[EvalPlan, OnnxPolicy]:
    """The plan, and the policy the checks loaded (the process that also runs episodes reuses it)."""
    _check_one_onnxruntime()
    if not 1 <= settings.num_episodes <= suite.max_episodes:
        raise pytest.UsageError(
            f"--vla-num-episodes must be in 1..{suite.max_episodes} ({suite.name} ships "
            f"{suite.max_episodes} init states per task), got {settings.num_episodes}"
        )
    _check_writable(settings)
    try:
        tasks = suite.resolve_tasks(settings.tasks)
        checked = check_export(settings.export, suite, tasks)
        for line in checked.warnings:
            config.issue_config_time_warning(VlaWarning(line), stacklevel=2)
        if checked.manifest.cameras:
            suite.check_rendering()
    except (ExportError, SuiteError) as exc:
        raise pytest.UsageError(str(exc)) from None
    plan = EvalPlan(
        suite=suite.name,
        export=settings.export,
        output=settings.output,
        tasks=tuple(tasks),
        num_episodes=settings.num_episodes,
        seed=settings.seed,
        max_steps_override=settings.max_steps,
        save_trajectories=settings.save_trajectories,
        episode_timeout_override=settings.episode_timeout,
        cameras=checked.manifest.cameras,
        provider=checked.policy.provider,
        collect_paths=explicit_paths,
        shard=settings.shard,
        video=settings.video,
    )
    return plan, checked.policy


def _check_one_onnxruntime() -> None:
    """onnxruntime's builds (CPU, GPU, ...) share the import name: with two installed, which one loads is chance."""
    builds = sorted(set(metadata.packages_distributions().get("onnxruntime", [])))
    if len(builds) > 1:
        keep = "onnxruntime-gpu" if "onnxruntime-gpu" in builds else builds[0]
        others = " ".join(build for build in builds if build != keep)
        raise pytest.UsageError(
            f"{' and '.join(builds)} are both installed and share the import name onnxruntime: keep one, "
            f"e.g. pip uninstall -y {others} && pip install --force-reinstall --no-deps {keep}"
        )


def _check_writable(settings: Settings) -> None:
    try:
        settings.output.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=settings.output, prefix=".write-check-"):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise pytest.UsageError(f"--vla-output {settings.output} is not writable: {reason}") from None
