"""The demo policy of the MetaWorld suite: MetaWorld's own scripted expert for each task, on the full state.

``--vla-suite metaworld --vla-policy demo``. The experts read the whole 39-dimensional observation
(privileged: object and goal positions), so no camera is rendered.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from pytest_vla.report.environment import package_version
from pytest_vla.report.schema import TaskSpec
from pytest_vla.suites.base import Observation, StateConvention
from pytest_vla.suites.metaworld.env import OBSERVATION_KEY
from pytest_vla.suites.metaworld.suite import task_name
from pytest_vla.suites.metaworld.tasks import EXPERT_POLICIES

KIND = "scripted"


class ScriptedExperts:
    cameras: tuple[str, ...] = ()
    state = StateConvention()
    provider = "metaworld.policies (scripted, in-process)"

    def __init__(self) -> None:
        self._expert: Any = None

    def identity(self) -> dict[str, Any]:
        return {"kind": KIND, "name": "metaworld.policies experts", "metaworld": package_version("metaworld")}

    def check(self, suite: Any, tasks: Sequence[TaskSpec]) -> list[str]:
        return []

    def begin_episode(self, seed: int, task: TaskSpec, episode_index: int) -> None:
        from metaworld import policies

        self._expert = getattr(policies, EXPERT_POLICIES[task_name(task)])()

    def act(self, observation: Observation) -> np.ndarray:
        with warnings.catch_warnings():
            # Several experts' gains exceed the action bounds, which the env clips; they warn at every step.
            warnings.filterwarnings("ignore", "Constant\\(s\\) may be too high", UserWarning)
            action = self._expert.get_action(np.asarray(observation.raw[OBSERVATION_KEY], dtype=np.float64))
        return np.asarray(action, dtype=np.float64).reshape(1, -1)

    def end_episode(self, success: bool, n_steps: int) -> None:
        self._expert = None

    def close(self) -> None:
        pass
