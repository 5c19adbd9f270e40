"""One ALOHA sim task's environment, made as LeRobot makes it, rendering only the cameras someone reads.

gym-aloha renders three 480x640 cameras on every step (``top``, ``angle``, ``front_close``) and
returns one; a frame nobody reads is not drawn (rendering reads the simulation and writes none of
it, so states and the frames read are unchanged: ``tests/test_aloha.py``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from pytest_vla.errors import EnvFailure, one_line
from pytest_vla.report.schema import TerminalReason
from pytest_vla.suites.aloha.goal import StagedGoal
from pytest_vla.suites.base import Observation
from pytest_vla.suites.mujoco_gl import about_rendering

ENV_IDS = {"insertion": "AlohaInsertion-v0", "transfer_cube": "AlohaTransferCube-v0"}
CAMERA = "top"  # the one gym-aloha returns
RENDER_SIZE = (480, 640)
STATE_DIM = 14  # agent_pos: per arm 6 joint positions (rad) and the gripper, normalised 0 (closed) .. 1 (open)
QPOS_KEY = "qpos"  # Observation.raw's key of the whole physics qpos (privileged: the objects' poses)


def build_env(task_name: str, cameras: tuple[str, ...], max_steps: int) -> Any:
    """gym-aloha's env of ``task_name`` with observations as LeRobot asks for them; closed on failure."""
    import gym_aloha  # noqa: F401  (registers the envs)
    import gymnasium

    env = gymnasium.make(
        f"gym_aloha/{ENV_IDS[task_name]}",
        disable_env_checker=True,
        obs_type="pixels_agent_pos",
        render_mode="rgb_array",
        max_episode_steps=max_steps,
    )
    try:
        physics = _physics(env)
        render = physics.render

        def render_read_cameras(*args: Any, camera_id: Any = -1, **kwargs: Any) -> np.ndarray:
            if camera_id in cameras:
                return render(*args, camera_id=camera_id, **kwargs)
            return np.zeros((kwargs.get("height", 240), kwargs.get("width", 320), 3), dtype=np.uint8)

        physics.render = render_read_cameras
        return env
    except BaseException:
        close_env(env)
        raise


def close_env(env: Any) -> None:
    """Free dm_control's physics first: otherwise its render context's finaliser prints tracebacks at exit."""
    with contextlib.suppress(Exception):
        _physics(env).free()
    env.close()


def _physics(env: Any) -> Any:
    return env.unwrapped._env.physics


class AlohaEnv:
    def __init__(self, env: Any, cameras: tuple[str, ...], seed: int, goal: StagedGoal) -> None:
        self._env = env
        self._cameras = cameras
        self._seed = seed
        self._goal = goal

    def reset(self, episode_index: int) -> Observation:
        with _simulator("resetting"):
            # gym-aloha seeds the objects' poses and its task's RNG from this; None would draw OS entropy.
            raw, _ = self._env.reset(seed=self._seed + episode_index)
            reward = self._env.unwrapped._env.task.get_reward(_physics(self._env))  # the reset's own level
        return self._observation(raw, reward)

    def step(self, action: np.ndarray) -> tuple[Observation, bool]:
        with _simulator("stepping"):
            # As LeRobot's policies give them; the reward is gym-aloha's staged one, 0..4.
            raw, reward, _, _, info = self._env.step(np.asarray(action, dtype=np.float32))
        return self._observation(raw, reward), bool(info["is_success"])

    def close(self) -> None:
        close_env(self._env)

    def _observation(self, raw: dict[str, Any], reward: float) -> Observation:
        images = {CAMERA: raw["pixels"][CAMERA]} if CAMERA in self._cameras else {}
        return Observation(
            images=images,
            state=np.asarray(raw["agent_pos"], dtype=np.float32),
            raw={"agent_pos": raw["agent_pos"], QPOS_KEY: _physics(self._env).data.qpos.copy()},
            goal=self._goal.reading(reward),
        )


@contextlib.contextmanager
def _simulator(doing: str) -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        reason = TerminalReason.RENDERING_FAILURE if about_rendering(exc) else TerminalReason.ADAPTER_ERROR
        raise EnvFailure(reason, f"simulator failed while {doing}: {one_line(exc)}") from exc
