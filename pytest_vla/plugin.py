"""pytest hooks of pytest-vla. They only wire pytest to the modules that do the work."""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

from pytest_vla import hookspecs
from pytest_vla.controller import options
from pytest_vla.controller.hooks import ControllerHooks
from pytest_vla.controller.items import (
    PLAN_KEY,
    ROW_KEY,
    RUNNER_KEY,
    EpisodeItem,
    SuiteCollector,
    keep_tasks_together,
    preflight_result,
)
from pytest_vla.controller.rootdir import choose_rootdir_without_option_values
from pytest_vla.controller.xdist import WORKER_PLAN, XdistHooks, auto_worker_count
from pytest_vla.errors import EpisodeHarnessError
from pytest_vla.plan import EvalPlan
from pytest_vla.preflight.result import PreflightResult
from pytest_vla.rollout import interrupts
from pytest_vla.suites import built_in_suite
from pytest_vla.suites.base import Suite


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    options.add_options(parser)


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser, args: list[str]) -> None:
    # Options are not parsed yet; the early parse already knows pytest-vla's.
    if getattr(early_config.known_args_namespace, "vla_export", None) is not None:
        choose_rootdir_without_option_values(early_config, parser, args)


def pytest_configure(config: pytest.Config) -> None:
    if not options.is_active(config):
        return
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        config.stash[PLAN_KEY] = EvalPlan.from_json(workerinput[WORKER_PLAN])
        interrupts.install()  # a terminal's Ctrl-C reaches the workers too
        return
    controller = ControllerHooks(config)
    config.pluginmanager.register(controller, "vla-controller")
    if config.pluginmanager.hasplugin("xdist"):
        config.pluginmanager.register(XdistHooks(controller), "vla-xdist")


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    # Runs before pytest_configure: it cannot live on the controller's hook objects.
    return auto_worker_count(config) if options.is_active(config) else None


def pytest_unconfigure(config: pytest.Config) -> None:
    interrupts.uninstall()


@pytest.fixture(scope="session")
def vla_preflight(pytestconfig: pytest.Config) -> PreflightResult:
    """The simulator preflight's result: run once per run, on the controller, before any episode.

    Its ``timings`` (env build, reset, step, render, query) and what it checked; skips the test
    when pytest-vla is not evaluating.
    """
    return preflight_result(pytestconfig)


@pytest.hookimpl(trylast=True)
def pytest_vla_make_suite(config: pytest.Config, name: str) -> Suite | None:
    return built_in_suite(name)


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(collector: pytest.Collector) -> Generator[None, Any, Any]:
    report = yield
    plan = collector.config.stash.get(PLAN_KEY, None)
    if plan is not None and isinstance(collector, pytest.Session):
        episodes = SuiteCollector.for_session(collector, plan)
        report.result = [*report.result, episodes] if plan.collect_paths else [episodes]
    return report


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    keep_tasks_together(items)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    report = yield
    if not isinstance(item, EpisodeItem):
        return report
    if call.when == "setup" and call.excinfo is not None and isinstance(call.excinfo.value, EpisodeHarnessError):
        # pytest shows setup errors as tracebacks; a harness error is one line that names the cause.
        report.longrepr = item.repr_failure(call.excinfo)
    row = item.stash.get(ROW_KEY, None)
    # The row travels on the report (xdist serialises extra attributes) to the controller.
    if row is not None and (call.when == "call" or (call.when == "setup" and call.excinfo is not None)):
        report.vla_episode = row
    return report


def pytest_runtest_logfinish() -> None:
    # A Ctrl-C that came while no simulator step followed (the env build, the last step) stops here,
    # once the episode's row is out.
    interrupts.raise_pending()


def pytest_sessionfinish(session: pytest.Session) -> None:
    runner = session.config.stash.get(RUNNER_KEY, None)
    if runner is not None:
        runner.close()
