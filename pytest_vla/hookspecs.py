"""Hooks that conftest files and plugins can implement to extend pytest-vla."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from pytest_vla.policy.base import Policy
    from pytest_vla.suites.base import Suite


@pytest.hookspec(firstresult=True)
def pytest_vla_make_suite(config: pytest.Config, name: str) -> Suite | None:
    """Return the suite called ``name`` (the value of ``--vla-suite``), or None if it is not yours.

    pytest-vla implements this for ``libero``; a plugin adds a benchmark by implementing it.

    Example::

        def pytest_vla_make_suite(config, name):
            if name == "my_bench":
                return MyBenchSuite()
    """


@pytest.hookspec
def pytest_vla_episode_finished(config: pytest.Config, episode: dict[str, Any]) -> None:
    """Called on the controller for each finished episode, with its report row.

    Useful for streaming results to a tracker while a long evaluation runs.

    Example::

        def pytest_vla_episode_finished(config, episode):
            tracker.log({episode["task_id"]: float(episode["success"])})
    """


@pytest.hookspec
def pytest_vla_modify_report(config: pytest.Config, report: dict[str, Any]) -> None:
    """Called on the controller before each write of ``report.json``; add keys in place.

    report.json is written when the items are collected, at most every few seconds
    (``report.writer.REWRITE_EVERY_S``) while episodes finish, and at the end: the final report
    always passes through this hook. For something per episode, use ``pytest_vla_episode_finished``.

    Schema v1 is additive-only: add keys, do not change or remove existing ones.

    Example::

        def pytest_vla_modify_report(config, report):
            report["ci_job_url"] = os.environ.get("CI_JOB_URL")
    """


@pytest.hookspec(firstresult=True)
def pytest_vla_make_policy(config: pytest.Config, name: str, suite: Suite) -> Policy | None:
    """Return the policy called ``name`` (the value of ``--vla-policy``), or None if it is not yours.

    Called once in every process that runs episodes (each xdist worker) and once on the
    controller for the preflight's checks. The object implements :class:`pytest_vla.policy.base.Policy`;
    its ``identity()`` is what report.json records and what ``--vla-resume`` and merge compare.

    Example::

        def pytest_vla_make_policy(config, name, suite):
            if name == "scripted":
                return ScriptedPolicy(suite.action_dim)
    """
