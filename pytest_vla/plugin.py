"""pytest hooks of pytest-vla. They only wire pytest to the modules that do the work."""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from pytest_vla import gpus, hookspecs, interrupts, options, suites
from pytest_vla.collect import PLAN_KEY, ROW_KEY, RUNNER_KEY, EpisodeItem, SuiteCollector
from pytest_vla.junit import keep_last_attempts
from pytest_vla.plan import EvalPlan
from pytest_vla.session import ControllerSession, worker_exit

CONTROLLER_KEY = pytest.StashKey["ControllerHooks"]()
_WORKER_PLAN = "vla_plan"


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    options.add_options(parser)


def pytest_configure(config: pytest.Config) -> None:
    if not options.is_active(config):
        return
    config.pluginmanager.register(suites, "vla-suites")
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        config.stash[PLAN_KEY] = EvalPlan.from_json(workerinput[_WORKER_PLAN])
        interrupts.install()  # a terminal's Ctrl-C reaches the workers too
        return
    config.stash[CONTROLLER_KEY] = hooks = ControllerHooks(config)
    config.pluginmanager.register(hooks, "vla-controller")
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(XdistHooks(config), "vla-xdist")


class ControllerHooks:
    """Hooks that only the controller (the single process without xdist) implements."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.session: ControllerSession | None = None

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        # Before xdist starts workers (its sessionstart is trylast) and before the header prints.
        self.session = ControllerSession.start(self.config)
        self.config.stash[PLAN_KEY] = self.session.plan
        interrupts.install()

    def pytest_report_header(self, config: pytest.Config) -> list[str]:
        return self.session.header_lines() if self.session else []

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        # Without xdist the controller collects; under xdist see XdistHooks.
        if self.session:
            self.session.expect(item.nodeid for item in session.items)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if self.session:
            self.session.record(report)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.session and not self.config.option.collectonly:
            self.session.finish()
            session.exitstatus = self.session.exit_status(session.exitstatus)
            xml_path = getattr(self.config.option, "xmlpath", None)
            if xml_path and Path(xml_path).is_file():  # written by junitxml's sessionfinish, before this one
                keep_last_attempts(Path(xml_path), self.session.is_episode)

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if self.session and not self.config.option.collectonly:
            terminalreporter.section("pytest-vla")
            for line in self.session.summary():
                terminalreporter.write_line(line)


class XdistHooks:
    """Registered only when pytest-xdist is installed: ship the controller's plan to each worker."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config

    def pytest_xdist_setupnodes(self, config: pytest.Config, specs: list[Any]) -> None:
        devices = gpus.visible_gpus()
        if devices:
            assignment = gpus.pin_workers(specs, devices)
            reporter = config.pluginmanager.get_plugin("terminalreporter")
            if reporter is not None:
                pairs = ", ".join(f"gw{index}: {device}" for index, device in enumerate(assignment))
                reporter.write_line(f"vla: workers pinned to GPUs ({pairs})")

    def pytest_configure_node(self, node: Any) -> None:
        node.workerinput[_WORKER_PLAN] = self.config.stash[PLAN_KEY].to_json()

    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        controller = self.config.stash[CONTROLLER_KEY].session
        if controller is not None and error:
            controller.worker_deaths[node.gateway.id] = worker_exit(node, error)

    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        # Every worker collects the same items (the plan decides them); any one's list will do.
        controller = self.config.stash[CONTROLLER_KEY].session
        if controller is not None:
            controller.expect(ids)


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, Any, Any]:
    report = yield
    plan = collector.config.stash.get(PLAN_KEY, None)
    if plan is not None and isinstance(collector, pytest.Session):
        episodes = SuiteCollector.for_session(collector, plan)
        report.result = [*report.result, episodes] if plan.collect_paths else [episodes]
    return report


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    report = yield
    if not isinstance(item, EpisodeItem):
        return report
    if call.when == "setup" and call.excinfo is not None:
        # pytest shows setup errors as tracebacks; a harness error is one line that names the cause.
        report.longrepr = item.repr_failure(call.excinfo)
    row = item.stash.get(ROW_KEY, None)
    # The row travels on the report (xdist serialises extra attributes) to the controller.
    if row is not None and (call.when == "call" or (call.when == "setup" and call.excinfo is not None)):
        report.vla_episode = row
    return report


def pytest_sessionfinish(session: pytest.Session) -> None:
    runner = session.config.stash.get(RUNNER_KEY, None)
    if runner is not None:
        runner.close()
