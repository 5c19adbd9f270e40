"""The collection tree: a collector per suite, one per task, and a test item per episode.

Node ids read ``libero/libero_object:3::ep2``: the task in the id makes xdist's ``--dist loadscope``,
``loadfile`` and ``worksteal`` keep a task's episodes on one worker, which is also the unit that
reuses an env (see :func:`~pytest_vla.report.schema.task_nodeid`).

Outcomes follow what pytest users read them as: a success passes; an episode that runs out of
steps fails; anything the harness could not do (build the env, render, run the policy) is an
error, raised from the item's setup, so it never passes for a policy failure.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_vla.controller.options import runs_episodes
from pytest_vla.controller.preflight import make_policy_here, make_suite
from pytest_vla.errors import EpisodeFailure, EpisodeHarnessError
from pytest_vla.plan import EvalPlan
from pytest_vla.policy.base import Policy
from pytest_vla.preflight.result import PreflightResult
from pytest_vla.report.schema import EpisodeId, EpisodeRow, TaskSpec, TerminalReason, describe_failure, task_nodeid
from pytest_vla.rollout.runner import EpisodeRunner, PreparedEnv

PLAN_KEY = pytest.StashKey[EvalPlan]()
RUNNER_KEY = pytest.StashKey[EpisodeRunner]()
ROW_KEY = pytest.StashKey[EpisodeRow]()
# The policy the preflight loaded, kept only where this process also runs the episodes (no xdist):
# a possibly multi-GB model is not loaded a second time.
PREFLIGHT_POLICY_KEY = pytest.StashKey[Policy]()
# The first task's env, built by the controller while the preflight finished (no xdist).
PREFLIGHT_ENV_KEY = pytest.StashKey[PreparedEnv]()


class SuiteCollector(pytest.Collector):
    """The suite (``libero``): one child per task of the plan (of this shard) that still has episodes to run."""

    def __init__(self, *, plan: EvalPlan, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.plan = plan

    @classmethod
    def for_session(cls, session: pytest.Session, plan: EvalPlan) -> SuiteCollector:
        # An explicit id without a path: ids read "libero/..." from any directory.
        return cls.from_parent(session, name=plan.suite, nodeid=plan.suite, plan=plan)

    def collect(self) -> list[pytest.Collector]:
        finished = set(self.plan.finished)
        by_task: dict[str, list[EpisodeId]] = {}
        for episode in self.plan.episodes():
            if episode not in finished:
                by_task.setdefault(episode.task_key, []).append(episode)
        return [
            TaskCollector.from_parent(
                self, name=task.key, nodeid=task_nodeid(self.plan.suite, task.key), task=task, episodes=episodes
            )
            for task in self.plan.tasks
            if (episodes := by_task.get(task.key))
        ]


class TaskCollector(pytest.Collector):
    """One task (``libero_object:3``): its episodes, which share an env on whichever process runs them."""

    def __init__(self, *, task: TaskSpec, episodes: list[EpisodeId], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.task = task
        self.episodes = episodes
        if task.name is not None:  # -k push-v3 selects the task whose id reads metaworld:40
            self.extra_keyword_matches.add(task.name)

    def collect(self) -> list[pytest.Item]:
        return [
            EpisodeItem.from_parent(self, name=episode.item_name, task=self.task, episode=episode)
            for episode in self.episodes
        ]


class EpisodeItem(pytest.Item):
    """One episode; it runs in ``setup`` so that a harness problem is a pytest error, not a failure."""

    def __init__(self, *, task: TaskSpec, episode: EpisodeId, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.task = task
        self.episode = episode

    def setup(self) -> None:
        if not runs_episodes(self.config):  # --setup-only / --setup-plan show the item, nothing more
            return
        if ROW_KEY in self.stash:  # a rerun must not report the previous attempt's row
            del self.stash[ROW_KEY]
        # pytest-rerunfailures counts attempts on the item; the last attempt's row is the one kept.
        attempt = getattr(self, "execution_count", 1)
        row = self.stash[ROW_KEY] = _runner(self.config).run(self.task, self.episode, attempt)
        if TerminalReason(row["terminal_reason"]).is_harness_error:
            raise EpisodeHarnessError(describe_failure(row))

    def runtest(self) -> None:
        row = self.stash[ROW_KEY]
        if not row["success"]:
            raise EpisodeFailure(describe_failure(row))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, EpisodeHarnessError | EpisodeFailure):
            return f"{self.task.key}:{self.name}: {excinfo.value}"
        return str(super().repr_failure(excinfo, style=style))

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"{self.episode.label}: {self.task.instruction}"


def preflight_result(config: pytest.Config) -> PreflightResult:
    """The simulator preflight's result, from the plan every process has; skip where pytest-vla is off."""
    plan = config.stash.get(PLAN_KEY, None)
    if plan is None or plan.preflight is None:
        pytest.skip("vla_preflight: pytest-vla is not evaluating in this run (no policy named)")
    return plan.preflight


def keep_tasks_together(items: list[pytest.Item]) -> None:
    """Reorder episodes (in place) so each task's episodes are adjacent, in the order tasks first appear.

    Plugins that shuffle items (pytest-randomly) would otherwise make every process rebuild its
    env (5 to 20 s) for almost every episode. Other items keep their places.
    """
    slots = [position for position, item in enumerate(items) if isinstance(item, EpisodeItem)]
    episodes = [item for item in items if isinstance(item, EpisodeItem)]
    first_seen: dict[str, int] = {}
    for item in episodes:
        first_seen.setdefault(item.episode.task_key, len(first_seen))
    episodes.sort(key=lambda item: first_seen[item.episode.task_key])  # stable: a task's own order stays
    for position, item in zip(slots, episodes, strict=True):
        items[position] = item


def _runner(config: pytest.Config) -> EpisodeRunner:
    runner = config.stash.get(RUNNER_KEY, None)
    if runner is None:
        plan = config.stash[PLAN_KEY]
        # From xdist's workerinput, not the environment: a nested pytest inherits its parent's variables.
        workerinput = getattr(config, "workerinput", {"workerid": "main", "workercount": 1})
        suite = make_suite(config, plan.suite)
        runner = config.stash[RUNNER_KEY] = EpisodeRunner(
            plan,
            suite,
            worker=workerinput["workerid"],
            announce=_past_capture(config),
            make_policy=lambda: make_policy_here(
                config,
                plan.policy,
                suite,
                workers=workerinput["workercount"],
                # The server was ready at the preflight: one gone mid-run costs each episode a query's wait.
                ready_timeout_s=plan.policy.query_timeout_s,
            ),
            policy=config.stash.get(PREFLIGHT_POLICY_KEY, None),
            prepared=config.stash.get(PREFLIGHT_ENV_KEY, None),
        )
    return runner


def _past_capture(config: pytest.Config) -> Callable[[str], None]:
    """A writer to the real stderr: the watchdog's last words must not vanish into pytest's capture."""

    def announce(message: str) -> None:
        capture = config.pluginmanager.getplugin("capturemanager")
        if capture is not None:
            capture.suspend_global_capture(in_=True)
        sys.stderr.write(f"\n{message}\n")
        sys.stderr.flush()

    return announce
