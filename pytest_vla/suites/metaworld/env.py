"""One MetaWorld task's environment, built and seeded as LeRobot's MetaWorld env does (``docs/metaworld.md``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from pytest_vla.errors import EnvFailure, one_line
from pytest_vla.report.schema import TerminalReason
from pytest_vla.suites.base import GoalReading, Observation
from pytest_vla.suites.metaworld.goal import GoalReader, Rest
from pytest_vla.suites.mujoco_gl import about_rendering

CAMERA = "corner2"
RENDER_SIZE = (480, 480)
CAMERA_POSITION = (0.75, 0.075, 0.7)  # where LeRobot moves corner2 to
GOAL_SEED = 42  # MT1(task, seed=42): the goal set LeRobot takes train_tasks[0] of
STATE_DIM = 4  # hand xyz and gripper opening: the observation's first four values
OBSERVATION_KEY = "observation"  # Observation.raw's key of the whole 39-dimensional vector


def build_env(task_name: str, render: bool) -> Any:
    """The env of one MT50 task, with its corner2 camera moved when it renders; closed on failure."""
    import metaworld

    goals = metaworld.MT1(task_name, seed=GOAL_SEED)
    env = goals.train_classes[task_name](
        render_mode="rgb_array" if render else None,
        camera_name=CAMERA,
        height=RENDER_SIZE[0],
        width=RENDER_SIZE[1],
    )
    try:
        env.set_task(goals.train_tasks[0])
        env.model.cam_pos[env.model.camera(CAMERA).id] = CAMERA_POSITION
        env.reset()  # once with the goal's own placement, as LeRobot does, before unfreezing it
        # set_task freezes the goal's object placement; LeRobot draws it from the seeded RNG instead.
        env._freeze_rand_vec = False
        env.seeded_rand_vec = True
        # The step budget is the harness's (500 by the protocol): past MetaWorld's own limit its step raises.
        env.max_path_length = 2**31 - 1
        return env
    except BaseException:
        with contextlib.suppress(Exception):
            env.close()
        raise


class MetaworldEnv:
    def __init__(self, env: Any, cameras: tuple[str, ...], seed: int, goal: GoalReader) -> None:
        self._env = env
        self._cameras = cameras
        self._seed = seed
        self._goal = goal
        self._rest = Rest(0.0, 0.0, np.zeros((0, 3)))  # where the last reset left things

    def reset(self, episode_index: int) -> Observation:
        with _simulator("resetting"):
            seed = self._seed + episode_index
            self._env.seed(seed)  # SawyerXYZEnv.reset ignores its seed argument: seed() re-creates its RNG
            raw, _ = self._env.reset(seed=seed)
        self._rest, goal = self._goal.at_reset(self._env.model, self._env.data)
        return self._observation(raw, goal)

    def step(self, action: np.ndarray) -> tuple[Observation, bool]:
        with _simulator("stepping"):
            # float32, as LeRobot's policies hand actions over: MetaWorld scales them in their own precision.
            raw, _, _, _, info = self._env.step(np.asarray(action, dtype=np.float32))
        success = bool(info["success"])
        return self._observation(raw, self._goal.read(self._env.data, success, self._rest)), success

    def close(self) -> None:
        self._env.close()

    def _observation(self, raw: np.ndarray, goal: GoalReading) -> Observation:
        images = {}
        if self._cameras:
            with _simulator("rendering"):
                # corner2 renders upside down; LeRobot flips both axes (a 180 degree rotation).
                images[CAMERA] = np.ascontiguousarray(np.flip(self._env.render(), (0, 1)))
        return Observation(
            images=images,
            state=np.asarray(raw[:STATE_DIM], dtype=np.float32),
            raw={OBSERVATION_KEY: raw},
            goal=goal,
        )


@contextlib.contextmanager
def _simulator(doing: str) -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        reason = TerminalReason.RENDERING_FAILURE if about_rendering(exc) else TerminalReason.ADAPTER_ERROR
        raise EnvFailure(reason, f"simulator failed while {doing}: {one_line(exc)}") from exc
