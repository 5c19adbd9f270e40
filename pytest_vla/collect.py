"""The collection tree: one collector per suite, one test item per (task, episode).

Outcomes follow what pytest users read them as: a success passes; an episode that runs out of
steps fails; anything the harness could not do (build the env, render, run the policy) is an
error, raised from the item's setup, so it never passes for a policy failure.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_vla.episode import HARNESS_ERRORS, SUCCESS
from pytest_vla.plan import EvalPlan
from pytest_vla.preflight import PREFLIGHT_POLICY_KEY, make_suite
from pytest_vla.runtime import EpisodeRunner, describe_failure
from pytest_vla.suites.base import TaskSpec

PLAN_KEY = pytest.StashKey[EvalPlan]()
RUNNER_KEY = pytest.StashKey[EpisodeRunner]()
ROW_KEY = pytest.StashKey[dict[str, Any]]()

# The episode facts every JUnit testcase carries as <property> elements.
JUNIT_PROPERTIES = ("task_id", "task_index", "episode_index", "terminal_reason", "n_steps", "wall_clock_s")


class EpisodeHarnessError(Exception):
    """The harness could not run the episode (reported as a pytest error)."""


class EpisodeFailure(Exception):
    """The policy did not complete the task (reported as a pytest failure)."""


def episode_name(family: str, index: int, episode: int) -> str:
    """An episode item's name, e.g. ``libero_object:3:ep2`` (its node id is ``<suite>::<name>``)."""
    return f"{family}:{index}:ep{episode}"


def episode_key(plan: EvalPlan, nodeid: str) -> tuple[str, int, int] | None:
    """(family, task index, episode) of an episode's node id, ``None`` for any other test."""
    prefix = f"{plan.suite}::"
    if not nodeid.startswith(prefix):
        return None
    family, _, rest = nodeid[len(prefix) :].partition(":")
    index, _, episode = rest.partition(":ep")
    if not (index.isdigit() and episode.isdigit()):
        return None
    return family, int(index), int(episode)


class SuiteCollector(pytest.Collector):
    def __init__(self, *, plan: EvalPlan, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.plan = plan

    @classmethod
    def for_session(cls, session: pytest.Session, plan: EvalPlan) -> SuiteCollector:
        # An explicit id without a path: item ids read "libero::libero_object:3:ep2" from any directory.
        return cls.from_parent(session, name=plan.suite, nodeid=plan.suite, plan=plan)

    def collect(self) -> list[pytest.Item]:
        finished = set(self.plan.finished)
        return [
            EpisodeItem.from_parent(self, name=name, task=task, episode_index=episode)
            for task in self.plan.tasks
            for episode in range(self.plan.num_episodes)
            if (name := episode_name(task.family, task.index, episode)) not in finished
        ]


class EpisodeItem(pytest.Item):
    def __init__(self, *, task: TaskSpec, episode_index: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.task = task
        self.episode_index = episode_index

    def setup(self) -> None:
        if ROW_KEY in self.stash:  # a rerun must not report the previous attempt's row
            del self.stash[ROW_KEY]
        row = self._runner().run(self.task, self.episode_index)
        # pytest-rerunfailures counts attempts on the item; the last attempt's row is the one kept.
        row["attempt"] = getattr(self, "execution_count", 1)
        self.stash[ROW_KEY] = row
        # Replace rather than append: a rerun of the item must not duplicate the properties.
        self.user_properties[:] = [p for p in self.user_properties if p[0] not in JUNIT_PROPERTIES]
        self.user_properties.extend((name, row[name]) for name in JUNIT_PROPERTIES)
        if row["terminal_reason"] in HARNESS_ERRORS:
            raise EpisodeHarnessError(describe_failure(row))

    def runtest(self) -> None:
        row = self.stash[ROW_KEY]
        if row["terminal_reason"] != SUCCESS:
            raise EpisodeFailure(describe_failure(row))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, EpisodeHarnessError | EpisodeFailure):
            return f"{self.name}: {excinfo.value}"
        return str(super().repr_failure(excinfo, style=style))

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"{self.task.key} episode {self.episode_index}: {self.task.instruction}"

    def _runner(self) -> EpisodeRunner:
        runner = self.config.stash.get(RUNNER_KEY, None)
        if runner is None:
            plan = self.config.stash[PLAN_KEY]
            # From xdist's workerinput, not the environment: a nested pytest inherits its parent's variables.
            workerinput = getattr(self.config, "workerinput", {"workerid": "main", "workercount": 1})
            runner = self.config.stash[RUNNER_KEY] = EpisodeRunner(
                plan,
                make_suite(self.config, plan.suite),
                worker=workerinput["workerid"],
                workers=workerinput["workercount"],
                policy=self.config.stash.get(PREFLIGHT_POLICY_KEY, None),  # set only where the preflight ran
            )
        return runner
