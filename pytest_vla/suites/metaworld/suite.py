"""The MetaWorld MT50 catalogue and protocol: tasks, difficulty groups, step budget, observations."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from pytest_vla.errors import EnvFailure, SuiteError, one_line
from pytest_vla.report.environment import package_version
from pytest_vla.report.schema import TaskSpec, TerminalReason, is_number
from pytest_vla.suites.base import Camera, StateConvention
from pytest_vla.suites.metaworld.env import (
    CAMERA,
    CAMERA_POSITION,
    GOAL_SEED,
    OBSERVATION_KEY,
    RENDER_SIZE,
    STATE_DIM,
    MetaworldEnv,
    build_env,
)
from pytest_vla.suites.metaworld.goal import GoalReader
from pytest_vla.suites.metaworld.tasks import DIFFICULTY, INSTRUCTIONS, MT50
from pytest_vla.suites.mujoco_gl import about_rendering, configure_rendering

MAX_STEPS = 500  # MetaWorld's max_path_length, LeRobot's episode length
FAMILY = "metaworld"  # every MT50 task, in MT50's order
# The difficulty groups SmolVLA-style reports give a success rate each: metaworld_easy, ...
FAMILIES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {FAMILY: MT50, **{f"{FAMILY}_{group}": names for group, names in DIFFICULTY.items()}}
)
DEFAULT_FAMILIES = tuple(f"{FAMILY}_{group}" for group in DIFFICULTY)  # all 50 tasks, each once
VERSIONED_PACKAGES = ("metaworld", "mujoco", "gymnasium", "numpy")


class MetaworldSuite:
    name = "metaworld"
    state_dim = STATE_DIM
    state_options: Mapping[str, tuple[str, ...]] = MappingProxyType({})  # obs[:4], no choices
    action_dim = 4  # hand dx, dy, dz (1 cm a unit) and gripper effort, in [-1, 1]
    cameras = MappingProxyType({CAMERA: Camera(*RENDER_SIZE, "flipped on both axes (rotated 180 degrees)")})
    max_episodes = 1000  # episode i is seeded seed + i: any count; LeRobot recommends 10
    video_camera = CAMERA
    control_hz = 80.0  # frame_skip 5 x timestep 2.5 ms
    default_seed = 1000  # lerobot-eval's: episode i is seeded 1000 + i
    idle_action = (0.0, 0.0, 0.0, 0.0)
    gripper_command_last = True  # the gripper's effort
    # 3.1 pins mujoco 3.3.0; MuJoCo 3.5 changed collisions (MetaWorld PR #569).
    requirements = MappingProxyType({"metaworld": ">=3.0,<3.1", "mujoco": ">=3.0,<3.5"})
    remedies = MappingProxyType(
        {
            "import-error": "install the suite's simulator (pip install 'pytest-vla[metaworld]') and, for OSMesa, "
            "apt-get install libosmesa6",
            "dep-version-conflict": "install the versions the protocol is defined on: "
            "pip install 'pytest-vla[metaworld]' (docs/metaworld.md)",
        }
    )

    def resolve_tasks(self, selection: Sequence[str]) -> list[TaskSpec]:
        tasks: dict[str | None, TaskSpec] = {}  # by MetaWorld's name: a task in two selected families runs once
        for entry in selection or DEFAULT_FAMILIES:
            for task in _tasks(entry.strip()):
                tasks.setdefault(task.name, task)
        return list(tasks.values())

    def protocol(self) -> dict[str, Any]:
        return {
            "reference": "LeRobot lerobot/envs/metaworld.py (MetaworldEnv) and lerobot-eval",
            "max_steps": {family: MAX_STEPS for family in FAMILIES},
            "goal": f"MT1(task, seed={GOAL_SEED}).train_tasks[0]; object and goal placement drawn from the seeded RNG",
            "seeding": "env.seed(seed + episode_index) before every reset",
            "camera": f"{CAMERA} at {list(CAMERA_POSITION)}",
            "resolution": list(RENDER_SIZE),
            "image_rotation_deg": 180,
            "state": "obs[:4]: hand xyz + gripper opening",
            "action": "4-D in [-1, 1]: hand dx, dy, dz, gripper; stepped as float32",
            "success": "info['success'], which ends the episode",
            "render_backend": os.environ.get("MUJOCO_GL", "osmesa"),
            "versions": {name: package_version(name) for name in VERSIONED_PACKAGES},
        }

    def observation_shapes(self, task: TaskSpec) -> Mapping[str, tuple[int, ...]]:
        return {OBSERVATION_KEY: (39,)}

    def objects_of_interest(self, task: TaskSpec) -> tuple[str, ...]:
        return ()

    def make_env(self, task: TaskSpec, cameras: Sequence[str], seed: int, state: StateConvention) -> MetaworldEnv:
        configure_rendering()
        try:
            name = task_name(task)
            env = build_env(name, render=bool(cameras))
            try:
                return MetaworldEnv(env, tuple(cameras), seed, GoalReader.of(env.model, name))
            except BaseException:
                env.close()
                raise
        except Exception as exc:
            reason = TerminalReason.RENDERING_FAILURE if about_rendering(exc) else TerminalReason.ENV_BUILD_FAILURE
            raise EnvFailure(reason, f"building the env for {task.key}: {one_line(exc)}") from exc

    def demo_policy(self) -> Any:
        from pytest_vla.suites.metaworld.expert import ScriptedExperts

        return ScriptedExperts()


def task_name(task: TaskSpec) -> str:
    """The MT50 name (``push-v3``) of a task of any family."""
    return FAMILIES[task.family][task.index]


def _tasks(entry: str) -> list[TaskSpec]:
    """The tasks one ``--vla-tasks`` entry names: a family, FAMILY:INDEX, FAMILY:NAME, or an MT50 name."""
    family, _, which = entry.partition(":")
    if family in INSTRUCTIONS and not which:  # a bare task name: MT50's
        family, which = FAMILY, family
    if family not in FAMILIES:
        raise SuiteError(
            f"--vla-tasks: unknown MetaWorld family or task {entry!r} (families: {', '.join(FAMILIES)}; "
            "tasks: an MT50 name such as push-v3)"
        )
    names = FAMILIES[family]
    if not which:
        indices = range(len(names))
    elif is_number(which) and int(which) < len(names):
        indices = range(int(which), int(which) + 1)
    elif which in names:
        indices = range(names.index(which), names.index(which) + 1)
    else:
        raise SuiteError(
            f"--vla-tasks: {entry!r}: {family} has tasks 0..{len(names) - 1}, or by name: {', '.join(names[:3])}, ..."
        )
    return [TaskSpec(family, index, INSTRUCTIONS[names[index]], MAX_STEPS, name=names[index]) for index in indices]
