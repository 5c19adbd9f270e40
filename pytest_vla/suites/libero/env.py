"""One LIBERO task's environment: reset to an init state, step, and the observation in the protocol's conventions.

Two deliberate refinements over openpi's loop make an episode bit-identical whichever worker runs
it and whatever ran before it: the env is re-seeded before every reset, because LIBERO's reset
draws object placements from numpy's global RNG and the draw leaks into MuJoCo's solver warm-start
even after ``set_init_state``; and the fixtures' samplers, which LIBERO accumulates over resets,
are set to the count the reference loop has at that episode (docs/protocol.md).
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from typing import Any

import numpy as np

from pytest_vla.errors import EnvFailure, one_line
from pytest_vla.report.schema import TerminalReason
from pytest_vla.suites.base import Observation, StateConvention
from pytest_vla.suites.libero.goal import AtReset, bystanders, moved_objects, read_goal
from pytest_vla.suites.libero.rendering import RENDER_SIZE, quiet_import
from pytest_vla.suites.libero.scenes import scene_model
from pytest_vla.suites.libero.state import pose_origin, quaternion_convention
from pytest_vla.suites.mujoco_gl import about_rendering, configure_rendering

SETTLE_STEPS = 10
SETTLE_ACTION = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0)  # zero motion, gripper open
# Manifest camera name -> robosuite camera name (its observation key is "<name>_image").
ROBOSUITE_CAMERAS = {"agentview": "agentview", "wrist": "robot0_eye_in_hand"}


def build_env(
    bddl: str,
    init_states: np.ndarray,
    cameras: tuple[str, ...],
    seed: int,
    objects_of_interest: tuple[str, ...],
    state: StateConvention,
) -> LiberoEnv:
    """The env of one BDDL problem, rendering only ``cameras``; a simulator built here is closed on failure."""
    with quiet_import():
        from libero.libero.envs.env_wrapper import ControlEnv, OffScreenRenderEnv

    with _compiled_scenes() as compiled:
        if cameras:
            env = OffScreenRenderEnv(
                bddl_file_name=bddl,
                camera_names=[ROBOSUITE_CAMERAS[camera] for camera in cameras],
                camera_heights=RENDER_SIZE[0],
                camera_widths=RENDER_SIZE[1],
            )
        else:
            # A policy that binds no camera gets a physics-only env: no GL context, no rendering.
            env = ControlEnv(bddl_file_name=bddl, use_camera_obs=False, has_offscreen_renderer=False, camera_names=[])
    try:
        if not cameras:
            _step_like_a_rendering_env(env.env)
        _reuse_compiled_model(env.env, compiled[-1] if compiled else None)
        return LiberoEnv(env, init_states, cameras, seed, objects_of_interest, state)
    except BaseException:
        # Each simulator holds about 2 GiB: one that cannot be used must not outlive this call.
        with contextlib.suppress(Exception):
            env.close()
        raise


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


# Model arrays up to this size are restored on reuse; larger ones are assets (textures, meshes,
# BVH) that nothing writes at run time.
_RESTORED_ARRAY_BYTES = 1 << 20
CompiledScene = tuple[str, dict[str, np.ndarray]]  # the XML compiled, and the model's arrays just after


def _compiled_arrays(model: Any) -> dict[str, np.ndarray]:
    """The restorable arrays of a just-compiled MuJoCo model, copied."""
    return {
        name: value.copy()
        for name in dir(model)
        if not name.startswith("_")
        and isinstance(value := getattr(model, name, None), np.ndarray)
        and value.nbytes <= _RESTORED_ARRAY_BYTES
    }


@contextlib.contextmanager
def _compiled_scenes() -> Iterator[list[CompiledScene]]:
    """The scenes robosuite compiles meanwhile, loaded from the scene cache where saved (``scenes``), and listed.

    An env's constructor compiles its scene before LIBERO writes fixture poses into the model: the
    arrays are copied at that moment, so the first hard reset reuses the constructor's model as
    later resets reuse it (``_reuse_compiled_model``) instead of compiling it a second time.
    """
    from robosuite.utils.binding_utils import MjSim

    declared = MjSim.__dict__["from_xml_string"]
    compiled: list[CompiledScene] = []

    def from_xml_string(xml: str) -> Any:
        sim = MjSim(scene_model(xml))  # what robosuite's from_xml_string does, with the model from the cache
        compiled.append((xml, _compiled_arrays(sim.model._model)))
        return sim

    MjSim.from_xml_string = staticmethod(from_xml_string)
    try:
        yield compiled
    finally:
        MjSim.from_xml_string = declared


def _reuse_compiled_model(env: Any, constructed: CompiledScene | None) -> None:
    """Make robosuite's hard reset keep the compiled MuJoCo model when the regenerated scene is the same.

    A hard reset rebuilds the scene's XML in Python (about 30 ms), then frees the simulator and
    compiles the XML again (0.6 to 2.5 s, with a garbage collection and, with cameras, a new GL
    context). When the new XML is byte-identical to the compiled one, the simulator is kept: the
    model's arrays go back to their values just after compilation (LIBERO writes fixture poses
    into them), ``mj_resetData`` gives a fresh MjData's state, and the forward calls of
    ``_initialize_sim`` and of the render context's constructor are made as before. Everything
    else in the reset (new robot, objects, samplers, placement draws) runs unchanged, so every
    state, observation and frame is bit-identical to a full hard reset
    (``tests/test_e2e_libero.py``, ``docs/performance.md``). ``constructed``: the scene the env's
    constructor compiled, which the first reset reuses.
    """
    import mujoco

    reset, destroy_sim, initialize_sim = env.reset, env._destroy_sim, env._initialize_sim
    compiled: dict[str, Any] = {"xml": None, "arrays": {}}
    if constructed is not None:
        compiled["xml"], compiled["arrays"] = constructed

    def initialize_or_reuse_sim(xml_string: str | None = None) -> None:
        xml = xml_string or env.model.get_xml()
        if env._xml_processor is not None:
            xml = env._xml_processor(xml)
        if env.sim is not None and xml == compiled["xml"]:
            model = env.sim.model._model
            for name, value in compiled["arrays"].items():
                getattr(model, name)[...] = value
            mujoco.mj_resetData(model, env.sim.data._data)
            env.sim.forward()  # as _initialize_sim does
            env.initialize_time(env.control_freq)
            if env.has_offscreen_renderer:
                env.sim.forward()  # as the render context's constructor does, which is not run again
            return
        destroy_sim()
        initialize_sim(xml)
        compiled["xml"], compiled["arrays"] = xml, _compiled_arrays(env.sim.model._model)

    def reset_reusing_model() -> Any:
        env._destroy_sim = lambda: None  # deferred to initialize_or_reuse_sim, which knows whether to
        env._initialize_sim = initialize_or_reuse_sim
        try:
            return reset()
        finally:
            del env._destroy_sim, env._initialize_sim  # the class's again: close() frees the simulator

    env.reset = reset_reusing_model


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
        # The export's convention, resolved once: the pose is computed at every step.
        self._pose_origin, self._quaternion = pose_origin(state), quaternion_convention(state)
        # LIBERO's own state objects locate bodies and region sites alike (what its goal checks use).
        self._object_states = [env.env.object_states_dict[name] for name in objects_of_interest]
        # The open/close and on/off samplers of articulated fixtures, as the env's construction made them.
        self._property_samplers = list(env.env.object_property_initializers)
        self._moved = moved_objects(env.env.parsed_problem)  # what the goal acts on, for the stages
        self._bystanders = bystanders(env.env)  # what the goal does not name, for side effects
        self._at_reset: AtReset | None = None  # what the last reset left, for the goal reading

    def reset(self, episode_index: int) -> Observation:
        with _simulator("resetting"):
            self._env.seed(self._seed)
            # LIBERO appends its fixtures' samplers again at every hard reset and draws from all of
            # them, so where a fixture stands (a cabinet, 6 to 18 mm apart) depends on how many
            # resets came before. The reference loop resets one env per task for episodes 0, 1,
            # 2...: episode k draws from k + 2 copies. That count, a function of the episode, keeps
            # the fixture draw varying over episodes as there, whichever worker runs which.
            self._env.env.object_property_initializers[:] = self._property_samplers * (episode_index + 1)
            with _unread_frames_blank(self._env.env.sim, bool(self._cameras)):
                _reset(self._env)
                self._env.set_init_state(self._init_states[episode_index])
                for _ in range(SETTLE_STEPS - 1):
                    # `done` during the settle steps is ignored, as in the reference loop.
                    self._env.step(list(SETTLE_ACTION))
            raw, _, _, _ = self._env.step(list(SETTLE_ACTION))  # its frames are the policy's first
            self._at_reset = AtReset.take(self._env.env, self._moved, self._bystanders)
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
        # What the OSC controller computed for this step (vla-eval's `controller_states`).
        controller = self._env.env.robots[0].controller
        controller_pose = (np.array(controller.ee_pos), np.array(controller.ee_ori_mat))
        state = np.concatenate([*self._eef_pose(raw, controller_pose), raw["robot0_gripper_qpos"]])
        positions = [np.array(entry.get_geom_state()["pos"], dtype=np.float64) for entry in self._object_states]
        at_reset = self._at_reset  # set by every reset, which gives the first observation
        return Observation(
            images=images,
            state=state,
            raw=raw,
            objects_of_interest=np.array(positions).reshape(-1, 3),
            controller_pose=controller_pose,
            goal=read_goal(self._env.env, self._moved, self._bystanders, at_reset) if at_reset is not None else None,
        )

    def _eef_pose(
        self, raw: dict[str, Any], controller_pose: tuple[np.ndarray, np.ndarray]
    ) -> tuple[np.ndarray, np.ndarray]:
        """End-effector position and axis-angle orientation under the export's state convention."""
        if self._pose_origin == "controller":
            position, quat = controller_pose[0], _transforms().mat2quat(controller_pose[1])
        else:
            position, quat = np.array(raw["robot0_eef_pos"]), raw["robot0_eef_quat"]
        return position, axis_angle(quat, self._quaternion)


@contextlib.contextmanager
def _unread_frames_blank(sim: Any, cameras: bool) -> Iterator[None]:
    """Frames nobody reads are not drawn: ``sim.render`` returns a blank frame meanwhile.

    A reset renders every camera four times (robosuite's sensor checks, the reset's and the init
    state's observations) and once per settle step, about 0.1 s a frame with OSMesa; only the last
    settle step's frames reach the policy. Rendering reads the simulation and writes none of it,
    so states and the policy's frames are unchanged (``tests/test_e2e_libero.py``). A reset that
    compiles a new simulator renders as before: the blank stands in on this one only.
    """
    if not cameras:
        yield
        return

    def blank(width: int, height: int, **_: Any) -> np.ndarray:
        return np.zeros((height, width, 3), dtype=np.uint8)

    sim.render = blank
    try:
        yield
    finally:
        del sim.render  # MjSim's own again


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
    with quiet_import():
        from robosuite.utils import transform_utils

    return transform_utils


@contextlib.contextmanager
def _simulator(doing: str) -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        reason = TerminalReason.RENDERING_FAILURE if about_rendering(exc) else TerminalReason.ADAPTER_ERROR
        raise EnvFailure(reason, f"simulator failed while {doing}: {one_line(exc)}") from exc
