"""pytest hooks of pytest-vla. They only wire pytest to the modules that do the work.

pytest loads this module in every session of an environment that has pytest-vla installed, so it
imports only what declaring the options needs; the rest is imported once ``--vla-export`` is given.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from typing import TYPE_CHECKING

import pytest

from pytest_vla import hookspecs
from pytest_vla.controller import options
from pytest_vla.controller.rootdir import choose_rootdir_without_option_values
from pytest_vla.rollout import interrupts

if TYPE_CHECKING:
    from pytest_vla.policy.base import Policy
    from pytest_vla.preflight.result import PreflightResult
    from pytest_vla.suites.base import Suite

# The variables an evaluating run sets in its own process (rendering backend, GPU pin), as they were before it.
_SAVED_ENVIRONMENT = pytest.StashKey[dict[str, str | None]]()


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    options.add_options(parser)


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser, args: list[str]) -> None:
    # Options are not parsed yet; the early parse already knows pytest-vla's.
    if options.names_a_policy(early_config.known_args_namespace):
        choose_rootdir_without_option_values(early_config, parser, args)


def pytest_configure(config: pytest.Config) -> None:
    if not options.is_active(config):
        return
    from pytest_vla.controller.episode_hooks import EpisodeHooks
    from pytest_vla.controller.placement import PROCESS_VARIABLES

    config.stash[_SAVED_ENVIRONMENT] = {name: os.environ.get(name) for name in PROCESS_VARIABLES}
    config.pluginmanager.register(EpisodeHooks(), "vla-episodes")
    workerinput = getattr(config, "workerinput", None)
    if workerinput is not None:
        from pathlib import Path

        from pytest_vla.controller.items import PLAN_KEY
        from pytest_vla.controller.xdist import WORKER_PLAN, WORKER_PLAN_FILE, wait_for_plan
        from pytest_vla.plan import EvalPlan

        plan = workerinput.get(WORKER_PLAN) or wait_for_plan(config, Path(workerinput[WORKER_PLAN_FILE]))
        if plan is None:
            pytest.exit("vla: the controller is gone: no episode runs here", returncode=4)
        config.stash[PLAN_KEY] = EvalPlan.from_json(plan)
        interrupts.install()  # a terminal's Ctrl-C reaches the workers too
        return
    from pytest_vla.controller.hooks import ControllerHooks

    controller = ControllerHooks(config)
    config.pluginmanager.register(controller, "vla-controller")
    if config.pluginmanager.hasplugin("xdist"):
        from pytest_vla.controller.xdist import XdistHooks

        config.pluginmanager.register(XdistHooks(controller), "vla-xdist")


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    # Runs before pytest_configure: it cannot live on the controller's hook objects.
    if not options.is_active(config):
        return None
    from pytest_vla.controller.xdist import auto_worker_count

    return auto_worker_count(config)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_sessionfinish(session: pytest.Session) -> Generator[None, None, None]:
    if not options.is_active(session.config):
        return (yield)
    # report.json and the summary are being written: a first Ctrl-C or SIGTERM waits for them.
    with interrupts.deferred():
        result = yield
    if interrupts.take_pending() is not None:
        session.exitstatus = pytest.ExitCode.INTERRUPTED
    return result


def pytest_unconfigure(config: pytest.Config) -> None:
    interrupts.uninstall()
    # The user's own tests after this session (pytester runs, a later session in the same process)
    # see the environment they had.
    for name, value in config.stash.get(_SAVED_ENVIRONMENT, {}).items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="session")
def vla_preflight(pytestconfig: pytest.Config) -> PreflightResult:
    """The simulator preflight's result: run once per run, on the controller, before any episode.

    Its ``timings`` (env build, reset, step, render, query) and what it checked; skips the test
    when pytest-vla is not evaluating.
    """
    if not options.is_active(pytestconfig):
        pytest.skip("vla_preflight: pytest-vla is not evaluating in this run (no --vla-export)")
    from pytest_vla.controller.items import preflight_result

    return preflight_result(pytestconfig)


@pytest.hookimpl(trylast=True)
def pytest_vla_make_suite(config: pytest.Config, name: str) -> Suite | None:
    from pytest_vla.suites import installed_suite

    return installed_suite(name)


@pytest.hookimpl(trylast=True)
def pytest_vla_make_policy(config: pytest.Config, name: str, suite: Suite) -> Policy | None:
    """``--vla-policy demo``: the suite's own scripted policy, where it ships one (MetaWorld's experts)."""
    demo_policy = getattr(suite, "demo_policy", None)
    return demo_policy() if name == options.DEMO_NAME and demo_policy is not None else None
