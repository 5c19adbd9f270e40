"""The ALOHA sim catalogue and protocol (gym-aloha, as LeRobot evaluates it): two bimanual tasks."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from pytest_vla.errors import EnvFailure, SuiteError, one_line
from pytest_vla.report.environment import package_version
from pytest_vla.report.schema import TaskSpec, TerminalReason, is_number
from pytest_vla.suites.aloha.env import CAMERA, ENV_IDS, QPOS_KEY, RENDER_SIZE, STATE_DIM, AlohaEnv, build_env
from pytest_vla.suites.aloha.goal import GOALS
from pytest_vla.suites.base import Camera, StateConvention
from pytest_vla.suites.mujoco_gl import about_rendering, configure_rendering

FAMILY = "aloha"
TASKS = tuple(ENV_IDS)  # aloha:0 is insertion, aloha:1 transfer_cube
# What lerobot-eval gives a policy as the task: gym-aloha's envs have no task_description, so it falls back
# to their `task` attribute (lerobot_eval.py rollout). docs/aloha.md has openpi's prompt beside it.
INSTRUCTIONS = {"insertion": "insertion", "transfer_cube": "transfer_cube"}
MAX_STEPS = 400  # LeRobot's episode length (gym-aloha registers 300, too few for insertion)
VERSIONED_PACKAGES = ("gym-aloha", "dm-control", "mujoco", "gymnasium", "numpy")
# Where each task's scene has its qpos: the arms (16), then the objects' free joints.
QPOS_SIZES = {"insertion": 30, "transfer_cube": 23}
# gym-aloha's START_ARM_POSE as an action: each arm's joints where an episode starts.
REST_ACTION = (0.0, -0.96, 1.16, 0.0, -0.3, 0.0, 0.1) * 2  # gripper: the start pose is 0.0998


class AlohaSuite:
    name = "aloha"
    state_dim = STATE_DIM
    state_options: Mapping[str, tuple[str, ...]] = MappingProxyType({})  # agent_pos, no choices
    action_dim = 14  # absolute joint positions (rad) and normalised grippers per arm: not [-1, 1]
    cameras = MappingProxyType({CAMERA: Camera(*RENDER_SIZE, "as rendered")})
    max_episodes = 1000  # episode i is seeded seed + i
    video_camera = CAMERA
    control_hz = 50.0  # gym-aloha's DT = 0.02 s
    default_seed = 1000  # lerobot-eval's: episode i is seeded 1000 + i
    idle_action = REST_ACTION
    gripper_command_last = False  # two grippers, values 6 and 13, each normalised to [0, 1]
    requirements = MappingProxyType({"gym-aloha": ">=0.1.5,<0.2", "dm-control": ">=1.0.15,<1.1"})
    remedies = MappingProxyType(
        {
            "import-error": "install the suite's simulator (pip install 'pytest-vla[aloha]') and, for OSMesa, "
            "apt-get install libosmesa6",
            "dep-version-conflict": "install the versions the protocol is defined on: pip install 'pytest-vla[aloha]' "
            "(docs/aloha.md)",
        }
    )

    def resolve_tasks(self, selection: Sequence[str]) -> list[TaskSpec]:
        tasks: list[TaskSpec] = []
        for entry in selection or [FAMILY]:
            for task in _tasks(entry.strip()):
                if task not in tasks:
                    tasks.append(task)
        return tasks

    def protocol(self) -> dict[str, Any]:
        return {
            "reference": "LeRobot lerobot/envs/configs.py (AlohaEnv) and lerobot-eval",
            "envs": {name: f"gym_aloha/{env_id}" for name, env_id in ENV_IDS.items()},
            "max_steps": {FAMILY: MAX_STEPS},
            "seeding": "env.reset(seed=seed + episode_index)",
            "camera": CAMERA,
            "resolution": list(RENDER_SIZE),
            "image_rotation_deg": 0,
            "state": "agent_pos (14): per arm 6 joint positions + normalised gripper",
            "action": "14: per arm 6 absolute joint positions (rad) + normalised gripper (0 closed, 1 open); float32",
            "success": "info['is_success'] (staged reward reaches 4), which ends the episode",
            "render_backend": os.environ.get("MUJOCO_GL", "osmesa"),
            "versions": {name: package_version(name) for name in VERSIONED_PACKAGES},
        }

    def observation_shapes(self, task: TaskSpec) -> Mapping[str, tuple[int, ...]]:
        return {"agent_pos": (STATE_DIM,), QPOS_KEY: (QPOS_SIZES[TASKS[task.index]],)}

    def objects_of_interest(self, task: TaskSpec) -> tuple[str, ...]:
        return ()

    def make_env(self, task: TaskSpec, cameras: Sequence[str], seed: int, state: StateConvention) -> AlohaEnv:
        configure_rendering()
        try:
            # Long enough for any --vla-max-steps: the harness counts the steps.
            name = TASKS[task.index]
            return AlohaEnv(build_env(name, tuple(cameras), max_steps=2**31 - 1), tuple(cameras), seed, GOALS[name])
        except Exception as exc:
            reason = TerminalReason.RENDERING_FAILURE if about_rendering(exc) else TerminalReason.ENV_BUILD_FAILURE
            raise EnvFailure(reason, f"building the env for {task.key}: {one_line(exc)}") from exc

    def demo_policy(self) -> Any:
        from pytest_vla.suites.aloha.scripted import ScriptedBimanual

        return ScriptedBimanual()


def task_name(task: TaskSpec) -> str:
    """``insertion`` or ``transfer_cube``."""
    return TASKS[task.index]


def _tasks(entry: str) -> list[TaskSpec]:
    """The tasks one ``--vla-tasks`` entry names: ``aloha``, ``aloha:INDEX``, ``aloha:NAME`` or a bare name."""
    family, _, which = entry.partition(":")
    if family in TASKS and not which:
        family, which = FAMILY, family
    if family != FAMILY:
        raise SuiteError(f"--vla-tasks: unknown ALOHA task {entry!r} (tasks: {', '.join(f'aloha:{n}' for n in TASKS)})")
    if not which:
        names = list(TASKS)
    elif is_number(which) and int(which) < len(TASKS):
        names = [TASKS[int(which)]]
    elif which in TASKS:
        names = [which]
    else:
        raise SuiteError(f"--vla-tasks: {entry!r}: aloha has tasks 0..{len(TASKS) - 1}: {', '.join(TASKS)}")
    return [TaskSpec(FAMILY, TASKS.index(name), INSTRUCTIONS[name], MAX_STEPS, name=name) for name in names]
