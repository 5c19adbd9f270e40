"""A scripted suite registered through the public ``pytest_vla_make_suite`` hook: no MuJoCo, runs in seconds.

Tests copy this file into a pytester directory as its conftest. ``FAKE_SUITE_SCRIPT`` (JSON,
``{"TASK:EPISODE" or "TASK": behaviour}``) says what each episode does; the default is to run out
of steps. Behaviours: ``succeed`` (done at step 2), ``fail``, ``build_error``, ``close_error``,
``slow`` (0.2 s a step), ``hang_build``, ``die`` (the process exits at step 1), ``interrupt_at_build``
and ``interrupt_at_last_step`` (one SIGINT to this process there, the first time only). Every reset
appends ``TASK:EPISODE`` to ``resets.log`` in the working directory: which episodes started.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from pytest_vla.errors import EnvFailure, SuiteError
from pytest_vla.report.schema import TaskSpec, TerminalReason
from pytest_vla.suites.base import Observation, StateConvention

N_TASKS, MAX_STEPS = 4, 5
_interrupted = False  # one Ctrl-C per process: a second would interrupt at once, whatever the harness does


def _interrupt_once() -> None:
    global _interrupted
    if not _interrupted:
        _interrupted = True
        os.kill(os.getpid(), signal.SIGINT)


def _behaviour(task: TaskSpec, episode: int | None = None) -> str:
    script = json.loads(os.environ.get("FAKE_SUITE_SCRIPT", "{}"))
    return script.get(f"{task.index}:{episode}", script.get(str(task.index), "fail"))


class FakeEnv:
    def __init__(self, task: TaskSpec, cameras: Sequence[str] = ()) -> None:
        self.task = task
        self.cameras = tuple(cameras)
        self.t = 0
        self.behaviour = "fail"

    def reset(self, episode_index: int) -> Observation:
        self.t, self.behaviour = 0, _behaviour(self.task, episode_index)
        with open("resets.log", "a") as log:
            log.write(f"{self.task.index}:{episode_index}\n")
        return Observation(images=self._images(), state=np.zeros(8))

    def step(self, action: np.ndarray) -> tuple[Observation, bool]:
        self.t += 1
        if self.behaviour == "slow":
            time.sleep(0.2)
        if self.behaviour == "die":
            os._exit(3)
        if self.behaviour == "interrupt_at_last_step" and self.t == MAX_STEPS:
            _interrupt_once()
        done = self.behaviour == "succeed" and self.t == 2
        return Observation(images=self._images(), state=np.full(8, float(self.t))), done

    def _images(self) -> dict[str, np.ndarray]:
        """A frame per rendered camera whose brightness counts the steps: 0, 40, 80, ..."""
        return {camera: np.full((16, 16, 3), min(40 * self.t, 255), dtype=np.uint8) for camera in self.cameras}

    def close(self) -> None:
        if _behaviour(self.task) == "close_error":
            raise RuntimeError("the simulator would not close")


class FakeSuite:
    name = "fake"
    state_dim = 8
    action_dim = 7
    render_size = (8, 8)
    max_episodes = 10
    video_camera = "agentview"

    def resolve_tasks(self, selection: Sequence[str]) -> list[TaskSpec]:
        tasks = []
        for entry in selection or ["fake"]:
            family, _, index = entry.partition(":")
            if family != "fake" or (index and not (index.isdigit() and int(index) < N_TASKS)):
                raise SuiteError(f"--vla-tasks: unknown fake task {entry!r}")
            for i in [int(index)] if index else range(N_TASKS):
                tasks.append(TaskSpec("fake", i, f"do fake thing {i}", MAX_STEPS))
        return tasks

    def protocol(self) -> dict[str, Any]:
        return {"reference": "tests/fake_suite.py", "max_steps": MAX_STEPS}

    def observation_shapes(self, task: TaskSpec) -> Mapping[str, tuple[int, ...]]:
        return {}

    def objects_of_interest(self, task: TaskSpec) -> tuple[str, ...]:
        return ()

    def check_rendering(self) -> None:
        pass

    def make_env(self, task: TaskSpec, cameras: Sequence[str], seed: int, state: StateConvention) -> FakeEnv:
        behaviour = _behaviour(task)
        if behaviour == "build_error":
            raise EnvFailure(TerminalReason.BDDL_FAILURE, f"building the env for {task.key}: no such scene")
        if behaviour == "hang_build":
            time.sleep(3600)
        if behaviour == "interrupt_at_build":
            _interrupt_once()
            raise EnvFailure(TerminalReason.BDDL_FAILURE, f"building the env for {task.key}: interrupted")
        return FakeEnv(task, cameras)


def pytest_vla_make_suite(config: Any, name: str) -> FakeSuite | None:
    return FakeSuite() if name == "fake" else None
