"""The controller's pytest hooks: the preflight before workers start, rows as reports come in, the verdict."""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path

import pytest

from pytest_vla.controller.items import PLAN_KEY
from pytest_vla.controller.options import runs_episodes
from pytest_vla.controller.placement import AUTO_WORKERS_KEY
from pytest_vla.controller.progress import episode_status
from pytest_vla.controller.run import ControllerRun, RunSetup
from pytest_vla.rollout import interrupts


class ControllerHooks:
    """Registered on the controller (the single process without xdist); ``run`` exists once the preflight passed."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.setup: RunSetup | None = None  # read as the session starts
        self.run: ControllerRun | None = None
        self._tally: str | None = None  # the progress line to show once the item's status is out

    @pytest.hookimpl(wrapper=True)
    def pytest_sessionstart(self, session: pytest.Session) -> Generator[None, None, None]:
        # Before xdist places its workers (in its own sessionstart) and before the header prints.
        self.setup = RunSetup.read(self.config)
        if not self.config.pluginmanager.hasplugin("dsession"):
            self.begin()
        return (yield)  # under xdist, XdistHooks begins the run once the workers are starting

    def begin(self) -> ControllerRun:
        """The preflight, then the run: its cost preview or confirmation, its plan for the episodes."""
        assert self.setup is not None, "the run begins once its session has started"
        run = ControllerRun.start(self.config, self.setup)
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if run.settings.cost_preview:
            for line in run.preview_lines():
                if reporter is not None:
                    reporter.write_line(line)
            pytest.exit("cost preview only: no episode ran", returncode=pytest.ExitCode.OK)
        if reporter is not None and self.config.pluginmanager.hasplugin("dsession"):
            # xdist's session starts after the header is out: the run's lines follow it.
            for line in run.header_lines():
                reporter.write_line(line)
        run.confirm_cost()
        self.run = run
        self.config.stash[PLAN_KEY] = run.plan
        interrupts.install()
        return run

    def pytest_report_header(self, config: pytest.Config) -> list[str]:
        auto = config.stash.get(AUTO_WORKERS_KEY, None)
        return ([auto] if auto else []) + (self.run.header_lines() if self.run else [])

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        # Without xdist the controller collects; under xdist see XdistHooks.
        if self.run is not None and not self.config.pluginmanager.hasplugin("dsession"):
            self.run.expect(item.nodeid for item in session.items)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if self.run is not None:
            self._tally = self.run.record(report) or self._tally

    def pytest_runtest_logfinish(self) -> None:
        # After the item's own status line, so the tally reads as a line of its own.
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if self._tally and reporter is not None:
            reporter.write_line(self._tally)
        self._tally = None

    def pytest_report_teststatus(
        self, report: pytest.TestReport, config: pytest.Config
    ) -> tuple[str, str, tuple[str, dict[str, bool]]] | None:
        row = getattr(report, "vla_episode", None)
        return episode_status(report, row) if row is not None else None

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.run is not None and runs_episodes(self.config):
            xml_path = getattr(self.config.option, "xmlpath", None)
            session.exitstatus = self.run.finish(session.exitstatus, Path(xml_path) if xml_path else None)

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if self.run is not None and runs_episodes(self.config):
            terminalreporter.section("pytest-vla")
            for line in self.run.summary():
                terminalreporter.write_line(line)
