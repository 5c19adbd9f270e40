"""The hooks of an evaluating run on every process (the controller and each xdist worker).

Registered by ``plugin.py`` only once ``--vla-export`` is given, so a pytest session that does not
evaluate never imports the collection tree, the rollout or the report stack.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest

from pytest_vla.controller.items import (
    PLAN_KEY,
    PREFLIGHT_POLICY_KEY,
    ROW_KEY,
    RUNNER_KEY,
    EpisodeItem,
    SuiteCollector,
    keep_tasks_together,
)
from pytest_vla.errors import EpisodeHarnessError
from pytest_vla.rollout import interrupts


class EpisodeHooks:
    @pytest.hookimpl(wrapper=True)
    def pytest_make_collect_report(self, collector: pytest.Collector) -> Generator[None, Any, Any]:
        report = yield
        plan = collector.config.stash.get(PLAN_KEY, None)
        if plan is not None and isinstance(collector, pytest.Session):
            episodes = SuiteCollector.for_session(collector, plan)
            report.result = [*report.result, episodes] if plan.collect_paths else [episodes]
        return report

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, items: list[pytest.Item]) -> None:
        keep_tasks_together(items)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
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

    def pytest_runtest_logfinish(self) -> None:
        # A Ctrl-C that came while no simulator step followed (the env build, the last step) stops here,
        # once the episode's row is out.
        interrupts.raise_pending()

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        runner = session.config.stash.get(RUNNER_KEY, None)
        if runner is not None:
            runner.close()  # the preflight's policy too, which it was handed
        elif (policy := session.config.stash.get(PREFLIGHT_POLICY_KEY, None)) is not None:
            policy.close()  # no episode ran here (--collect-only, a cost preview)
