"""The controller's side of a run: preflight, the plan, collecting rows, the report and the summary.

Without xdist the controller is also the process that runs the episodes; with xdist it only
aggregates what the workers report.
"""

from __future__ import annotations

import dataclasses
import os
import signal
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from pytest_vla.collect import episode_key, episode_name
from pytest_vla.export import export_files
from pytest_vla.options import read_settings
from pytest_vla.outcome import exit_status, gate_line
from pytest_vla.plan import EvalPlan
from pytest_vla.preflight import make_suite, run_preflight
from pytest_vla.report import ReportWriter, row_key
from pytest_vla.resume import ResumeError, finished_rows
from pytest_vla.runtime import crashed_worker_row
from pytest_vla.summary import summary_lines


class ControllerSession:
    def __init__(
        self,
        config: pytest.Config,
        plan: EvalPlan,
        writer: ReportWriter,
        min_success_rate: float | None,
        resuming: bool,
    ) -> None:
        self.config = config
        self.plan = plan
        self.writer = writer
        self.min_success_rate = min_success_rate
        self.resuming = resuming  # --vla-resume: plan.finished holds the episodes the earlier report kept
        self._other_failures: set[str] = set()  # failed tests of the user's own beside the episodes
        self.worker_deaths: dict[str, tuple[str, int | None]] = {}  # xdist worker id -> (how, exit code)
        self._expected_failures: set[tuple[str, int, int]] = set()  # xfail-marked episodes that failed

    @classmethod
    def start(cls, config: pytest.Config) -> ControllerSession:
        """Check everything that can be checked before a simulator starts; raise a one-line UsageError."""
        settings = read_settings(config)
        plan = run_preflight(config, settings, explicit_paths=_explicit_paths(config))
        protocol = make_suite(config, plan.suite).protocol()
        files = export_files(plan.export)  # hashed once: exports can weigh gigabytes
        kept: list[dict[str, Any]] = []
        if settings.resume:
            kept = _resumable_rows(plan, protocol, files)
            plan = dataclasses.replace(plan, finished=tuple(episode_name(*row_key(row)) for row in kept))
        writer = ReportWriter(plan, protocol, workers=_worker_count(config), export_files=files)
        for row in kept:
            writer.add(row)
        return cls(config, plan, writer, settings.min_success_rate, settings.resume)

    def expect(self, nodeids: Iterable[str]) -> None:
        """The selected items (after -k, -m, --lf): episodes among them that never report are missing."""
        keys = [episode_key(self.plan, nodeid) for nodeid in nodeids]
        self.writer.expect([key for key in keys if key is not None])
        if not self.config.option.collectonly:
            # A valid, partial report.json exists from the start: a run killed before its first
            # episode still says what it was going to run.
            self.writer.write(self.config)

    def header_lines(self) -> list[str]:
        plan = self.plan
        n_items = len(plan.tasks) * plan.num_episodes
        kept = len(plan.finished)
        resume = [f"vla: --vla-resume: {kept} finished episodes of {self.writer.path} kept, {n_items - kept} to run"]
        return (resume if self.resuming else []) + [
            f"vla: export {plan.export} on {plan.provider}",
            f"vla: suite {plan.suite}, {len(plan.tasks)} tasks x {plan.num_episodes} episodes = {n_items} items, "
            f"seed {plan.seed}, cameras rendered: {', '.join(plan.cameras) or 'none'}, "
            f"MUJOCO_GL={os.environ.get('MUJOCO_GL', 'osmesa')}",
        ]

    def record(self, report: pytest.TestReport) -> None:
        row: dict[str, Any] | None = getattr(report, "vla_episode", None)
        if row is None and report.failed:
            key = episode_key(self.plan, report.nodeid)
            if key is None:
                self._other_failures.add(report.nodeid)
            elif report.when not in ("setup", "call", "teardown"):
                # xdist's report for an item whose worker died: no row came back, so make one.
                worker = getattr(getattr(report, "node", None), "gateway", None)
                worker_id = getattr(worker, "id", "?")
                how, code = self.worker_deaths.get(worker_id, ("no exit status", None))
                row = crashed_worker_row(self.plan, key, worker_id, how, code)
        if row is None:
            return
        if getattr(report, "wasxfail", None) is not None:
            self._expected_failures.add(row_key(row))
        self.writer.add(row)
        self.writer.write(self.config)
        self.config.hook.pytest_vla_episode_finished(config=self.config, episode=row)

    def is_episode(self, nodeid: str) -> bool:
        return episode_key(self.plan, nodeid) is not None

    def finish(self) -> Path:
        return self.writer.write(self.config)

    def exit_status(self, pytest_status: int) -> int:
        return exit_status(
            pytest_status, self.writer.rows, self.min_success_rate, len(self._other_failures), self._expected_failures
        )

    def summary(self) -> list[str]:
        lines = summary_lines(self.writer.build(), self.writer.path)
        if self.min_success_rate is not None:
            lines.append(gate_line(self.writer.rows, self.min_success_rate))
        return lines


def _resumable_rows(plan: EvalPlan, protocol: dict[str, Any], files: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The earlier report's rows of this run's episodes; a report of another export or protocol is refused."""
    try:
        rows = finished_rows(
            plan.output,
            suite=plan.suite,
            seed=plan.seed,
            protocol={**protocol, "max_steps_override": plan.max_steps_override},
            export_files=files,
        )
    except ResumeError as exc:
        raise pytest.UsageError(str(exc)) from None
    planned = {(task.family, task.index, episode) for task in plan.tasks for episode in range(plan.num_episodes)}
    return [row for row in rows if row_key(row) in planned]


def worker_exit(node: Any, error: object) -> tuple[str, int | None]:
    """How an xdist worker went down, and its exit code (negative: the signal) when the process tells."""
    popen = getattr(getattr(node.gateway, "_io", None), "popen", None)  # execnet's local popen gateways
    try:
        code = popen.wait(timeout=5) if popen is not None else None
    except Exception:  # a remote gateway, or a process that will not go
        code = None
    if code is not None and code < 0:
        return f"killed by {signal.Signals(-code).name}", code
    if code is not None:
        return f"exit code {code}", code
    return (str(error).splitlines()[0] if str(error) else "no exit status"), None


def _explicit_paths(config: pytest.Config) -> bool:
    """Whether the user named test paths; if not, pytest-vla runs episodes only (no testpaths, no cwd)."""
    return config.args_source == pytest.Config.ArgsSource.ARGS


def _worker_count(config: pytest.Config) -> int:
    if config.getoption("dist", "no") == "no":
        return 1
    return int(config.getoption("numprocesses", 0) or 1)
