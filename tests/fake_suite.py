"""A scripted suite registered through the public ``pytest_vla_make_suite`` hook: no MuJoCo, runs in seconds.

Tests copy this file into a pytester directory as its conftest. ``FAKE_SUITE_SCRIPT`` (JSON,
``{"TASK:EPISODE" or "TASK": behaviour}``) says what each episode does; the default is to run out
of steps. Behaviours: ``succeed`` (done at step 2), ``fail``, ``build_error``, ``close_error``,
``slow`` (0.2 s a step), ``hang_build``, ``die`` (the process exits at step 1), ``interrupt_at_build``
and ``interrupt_at_last_step`` (one SIGINT to this process there, the first time only), ``drop`` (the
bowl is touched at step 1, grasped at 2, then dropped, knocking the cup off the table: 0.22 m from
where it stood, 0.2 m lower, from step 3), ``noisy`` (done at step 1 if the first action's first
component is positive: at the reset's zero state, a policy's noise decides). The goal has two
conditions, ``(grasped fake_bowl_1)`` (from step 1 when succeeding, steps 1 and 2 when dropping)
and ``(on fake_bowl_1 fake_plate_1)`` (at success), and acts on the bowl: grasped at step 1 and at
its goal at step 2 when succeeding; the cup and a spoon are bystanders. Every reset appends
``TASK:EPISODE`` to ``resets.log`` in the working directory: which episodes started.

The simulator preflight's process follows ``FAKE_PREFLIGHT`` instead (``{"TASK" or "*": fault}``;
none by default): ``prompt`` (asks on stdin when importing), ``hang_import``, ``import_error``,
``hang_build``, ``crash`` (the process dies building the env), ``render_error``, ``blank`` (black
frames), ``drift`` (the goal object keeps falling after the reset), ``nan_state`` (a NaN state, which
the export turns into NaN actions), ``busy_state`` (a non-zero state).
``FAKE_REQUIREMENTS`` (JSON) is the suite's version windows. Served policies (both protocols) get the
agentview frame, the state and the instruction, and each reply's actions run as they come.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

import numpy as np

from pytest_vla.errors import EnvFailure, PolicyError, SuiteError
from pytest_vla.report.schema import Stage, TaskSpec, TerminalReason
from pytest_vla.suites.base import Camera, GoalReading, Observation, StateConvention

N_TASKS, MAX_STEPS = 4, 5
_interrupted = False  # one Ctrl-C per process: a second would interrupt at once, whatever the harness does


def _interrupt_once() -> None:
    global _interrupted
    if not _interrupted:
        _interrupted = True
        os.kill(os.getpid(), signal.SIGINT)


def _behaviour(task: TaskSpec, episode: int | None = None) -> str:
    if _in_preflight():
        return "fail"
    script = json.loads(os.environ.get("FAKE_SUITE_SCRIPT", "{}"))
    return script.get(f"{task.index}:{episode}", script.get(str(task.index), "fail"))


def _in_preflight() -> bool:
    main = getattr(sys.modules.get("__main__"), "__spec__", None)
    return getattr(main, "name", None) == "pytest_vla.preflight.probe"


def _fault(task: TaskSpec | None = None) -> str | None:
    if not _in_preflight():
        return None
    faults = json.loads(os.environ.get("FAKE_PREFLIGHT", "{}"))
    return faults.get(str(task.index), faults.get("*")) if task is not None else faults.get("*")


class FakeEnv:
    def __init__(self, task: TaskSpec, cameras: Sequence[str] = ()) -> None:
        self.task = task
        self.cameras = tuple(cameras)
        self.t = 0
        self.behaviour = "fail"
        self.fault = _fault(task)

    def reset(self, episode_index: int) -> Observation:
        self.t, self.behaviour = 0, _behaviour(self.task, episode_index)
        if not _in_preflight():
            with open("resets.log", "a") as log:
                log.write(f"{self.task.index}:{episode_index}\n")
        state = {"nan_state": np.full(8, np.nan), "busy_state": np.ones(8)}.get(self.fault, np.zeros(8))
        return Observation(
            images=self._images(),
            state=state,
            objects_of_interest=self._bowl(),
            goal=self._goal(),
        )

    def step(self, action: np.ndarray) -> tuple[Observation, bool]:
        self.t += 1
        if self.behaviour == "slow":
            time.sleep(0.2)
        if self.behaviour == "die":
            os._exit(3)
        if self.behaviour == "interrupt_at_last_step" and self.t == MAX_STEPS:
            _interrupt_once()
        done = (self.behaviour == "succeed" and self.t == 2) or (
            self.behaviour == "noisy" and self.t == 1 and float(action[0]) > 0
        )
        observation = Observation(
            images=self._images(),
            state=np.full(8, float(self.t)),
            objects_of_interest=self._bowl(),
            goal=self._goal(),
        )
        return observation, done

    def _goal(self) -> GoalReading:
        succeeding = self.behaviour == "succeed"
        grasped = (succeeding and self.t >= 1) or (self.behaviour == "drop" and self.t in (1, 2))
        conditions = {"(grasped fake_bowl_1)": grasped, "(on fake_bowl_1 fake_plate_1)": succeeding and self.t >= 2}
        knocked = self.behaviour == "drop" and self.t >= 3  # the dropped bowl knocks the cup off the table
        cup = np.array([0.08, 0.0, -0.2]) if knocked else np.zeros(3)
        return GoalReading(conditions, self._stages(), {"fake_cup_1": cup, "fake_spoon_1": np.zeros(3)})

    def _stages(self) -> dict[str, Stage]:
        if self.behaviour == "succeed":
            return {"fake_bowl_1": [Stage.UNTOUCHED, Stage.GRASPED, Stage.AT_GOAL][min(self.t, 2)]}
        dropping = {1: Stage.TOUCHED, 2: Stage.GRASPED} if self.behaviour == "drop" else {}
        return {"fake_bowl_1": dropping.get(self.t, Stage.UNTOUCHED)}

    def _images(self) -> dict[str, np.ndarray]:
        """A frame per rendered camera whose brightness counts the steps (0, 40, ..., 160, then 180) over a gradient."""
        if self.fault == "blank":
            return {camera: np.zeros((16, 16, 3), dtype=np.uint8) for camera in self.cameras}
        gradient = np.arange(16)[:, None, None] * 4
        return {camera: (gradient + min(40 * self.t, 180)).astype(np.uint8) * np.ones((1, 16, 3), np.uint8)
                for camera in self.cameras}  # fmt: skip

    def _bowl(self) -> np.ndarray:
        """The goal object's position: at rest, or falling 2 cm a step."""
        return np.array([[0.1, 0.2, 0.9 - (0.02 * self.t if self.fault == "drift" else 0.0)]])

    def close(self) -> None:
        if _behaviour(self.task) == "close_error":
            raise RuntimeError("the simulator would not close")


class FakeServedClient:
    """Served policies on the fake suite: its agentview camera and state; a reply's actions run as they come."""

    cameras = ("agentview",)
    state = StateConvention()
    warnings = ()

    def __init__(self, protocol: str) -> None:
        self.protocol = protocol

    def observation(self, observation: Observation, task: TaskSpec) -> dict[str, Any]:
        image, state = observation.images["agentview"], observation.state
        if self.protocol == "openpi":
            return {"observation/image": image, "observation/state": state, "prompt": task.instruction}
        return {"images": {"agentview": image}, "task_description": task.instruction, "states": state}

    def actions(self, reply: np.ndarray) -> np.ndarray:
        if reply.ndim not in (1, 2) or reply.shape[-1] != 7 or reply.size == 0:
            raise PolicyError(f"the server's actions have shape {list(reply.shape)}, not [7] or [K, 7]")
        return reply.reshape(-1, 7)


class FakeSuite:
    name = "fake"
    state_dim = 8
    state_options = MappingProxyType({"quaternion": ("robosuite", "antipodal")})  # accepted, computed one way
    action_dim = 7
    cameras = MappingProxyType({name: Camera(16, 16, "upright") for name in ("agentview", "wrist")})
    max_episodes = 10
    video_camera = "agentview"
    control_hz = 20.0
    default_seed = 7
    idle_action = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0)
    gripper_command_last = True
    remedies = MappingProxyType({"input-hang": "answer the fake suite's question once by hand"})

    @property
    def requirements(self) -> dict[str, str]:
        return json.loads(os.environ.get("FAKE_REQUIREMENTS", "{}"))

    def resolve_tasks(self, selection: Sequence[str]) -> list[TaskSpec]:
        fault = _fault()
        if fault == "prompt":
            input("Do you want to specify a custom path for the dataset folder? (Y/N): ")
        if fault == "hang_import":
            print("Do you want to specify a custom path for the dataset folder? (Y/N): ", flush=True)
            time.sleep(3600)
        if fault == "import_error":
            raise ImportError("cannot import name 'single_arm_env' from 'robosuite.environments.manipulation'")
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
        return ("fake_bowl_1",)

    def make_env(self, task: TaskSpec, cameras: Sequence[str], seed: int, state: StateConvention) -> FakeEnv:
        fault = _fault(task)
        if fault == "hang_build":
            time.sleep(3600)
        if fault == "crash":
            os._exit(11)
        if fault == "render_error" and cameras:
            raise EnvFailure(TerminalReason.RENDERING_FAILURE, "eglInitialize failed: EGL_NOT_INITIALIZED")
        behaviour = _behaviour(task)
        if behaviour == "build_error":
            raise EnvFailure(TerminalReason.ENV_BUILD_FAILURE, f"building the env for {task.key}: no such scene")
        if behaviour == "hang_build":
            time.sleep(3600)
        if behaviour == "interrupt_at_build":
            _interrupt_once()
            raise EnvFailure(TerminalReason.ENV_BUILD_FAILURE, f"building the env for {task.key}: interrupted")
        return FakeEnv(task, cameras)

    def served_client(self, protocol: str, params: Mapping[str, Any]) -> FakeServedClient:
        if protocol not in ("vla-eval", "openpi"):
            raise SuiteError(f"the fake suite has no client for {protocol!r} policy servers")
        return FakeServedClient(protocol)


def pytest_vla_make_suite(config: Any, name: str) -> FakeSuite | None:
    return FakeSuite() if name == "fake" else None
