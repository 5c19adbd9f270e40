"""The controller's side of a run: preflight, the plan, collecting rows, the report and the summary.

Without xdist the controller is also the process that runs the episodes; with xdist it only
aggregates what the workers report.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from pytest_vla.options import read_settings
from pytest_vla.plan import EvalPlan
from pytest_vla.preflight import make_suite, run_preflight
from pytest_vla.report import ReportWriter
from pytest_vla.summary import summary_lines


class ControllerSession:
    def __init__(self, config: pytest.Config, plan: EvalPlan, writer: ReportWriter) -> None:
        self.config = config
        self.plan = plan
        self.writer = writer

    @classmethod
    def start(cls, config: pytest.Config) -> ControllerSession:
        """Check everything that can be checked before a simulator starts; raise a one-line UsageError."""
        settings = read_settings(config)
        plan = run_preflight(config, settings, explicit_paths=_explicit_paths(config))
        protocol = make_suite(config, plan.suite).protocol()
        return cls(config, plan, ReportWriter(plan, protocol, workers=_worker_count(config)))

    def header_lines(self) -> list[str]:
        plan = self.plan
        n_items = len(plan.tasks) * plan.num_episodes
        return [
            f"vla: export {plan.export} on {plan.provider}",
            f"vla: suite {plan.suite}, {len(plan.tasks)} tasks x {plan.num_episodes} episodes = {n_items} items, "
            f"seed {plan.seed}, cameras rendered: {', '.join(plan.cameras) or 'none'}, "
            f"MUJOCO_GL={os.environ.get('MUJOCO_GL', 'osmesa')}",
        ]

    def record(self, report: pytest.TestReport) -> None:
        row: dict[str, Any] | None = getattr(report, "vla_episode", None)
        if row is None:
            return
        self.writer.add(row)
        self.writer.write(self.config)
        self.config.hook.pytest_vla_episode_finished(config=self.config, episode=row)

    def finish(self) -> Path:
        return self.writer.write(self.config)

    def summary(self) -> list[str]:
        return summary_lines(self.writer.build(), self.writer.path)


def _explicit_paths(config: pytest.Config) -> bool:
    """Whether the user named test paths; if not, pytest-vla runs episodes only (no testpaths, no cwd)."""
    return config.args_source == pytest.Config.ArgsSource.ARGS


def _worker_count(config: pytest.Config) -> int:
    if config.getoption("dist", "no") == "no":
        return 1
    return int(config.getoption("numprocesses", 0) or 1)
