"""LIBERO for served policies: what each server's own LIBERO client sends, and how it executes the reply.

vla-eval 0.8.0's client (``vla_eval/benchmarks/libero/benchmark.py``: ``make_obs``, ``step``) and
openpi's (``examples/libero/main.py``), value for value. Both rotate the renders by 180 degrees, as
:class:`~pytest_vla.suites.base.Observation`'s images already are; the state is computed here from
the simulator's own observation in each client's arithmetic (vla-eval's axis-angle is float32).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from pytest_vla.errors import PolicyError, SuiteError, short_repr
from pytest_vla.report.schema import TaskSpec
from pytest_vla.suites.base import Observation, StateConvention
from pytest_vla.suites.libero.state import pose_origin, quaternion_convention

ACTION_DIM = 7
# vla-eval's LIBEROBenchmark parameters this client honours, as its constructor does.
VLA_EVAL_OBSERVATION_PARAMS = ("send_wrist_image", "send_state", "quat_no_antipodal")
# Its other parameters set up the env, which here follows pytest-vla's protocol (docs/protocol.md).
VLA_EVAL_ENV_PARAMS = ("suite", "seed", "env_seed", "num_steps_wait", "max_steps")
OPENPI_IMAGE_SIZE = 224  # examples/libero/main.py: resize_size
OPENPI_REPLAN_STEPS = 5  # examples/libero/main.py: replan_steps


def served_client(protocol: str, params: Mapping[str, Any]) -> VlaEvalClient | OpenpiClient:
    if protocol == "vla-eval":
        return VlaEvalClient(params)
    if protocol == "openpi":
        return OpenpiClient()
    raise SuiteError(f"the libero suite has no client for {protocol!r} policy servers (it has vla-eval, openpi)")


class VlaEvalClient:
    """vla-eval's LIBERO client under the server's ``observation_params``: one 7-D action per observation."""

    def __init__(self, params: Mapping[str, Any]) -> None:
        flags = {name: _flag(params, name) for name in (*VLA_EVAL_OBSERVATION_PARAMS, "absolute_action")}
        if flags["absolute_action"]:
            raise PolicyError(
                "observation_params.absolute_action is true: the server's actions are absolute poses, and "
                "pytest-vla's LIBERO envs execute delta actions"
            )
        self.send_wrist_image, self.send_state = flags["send_wrist_image"], flags["send_state"]
        # vla-eval's default flips the quaternion to w >= 0 first; quat_no_antipodal keeps robosuite's formula.
        self._axis_angle = _robosuite_axis_angle_float32 if flags["quat_no_antipodal"] else vla_eval_axis_angle
        self.state = StateConvention.of({"quaternion": "robosuite" if flags["quat_no_antipodal"] else "antipodal"})
        self.cameras = ("agentview", "wrist") if self.send_wrist_image else ("agentview",)
        known = (*VLA_EVAL_OBSERVATION_PARAMS, "absolute_action")
        self.warnings = tuple(
            f"observation_params.{name}={short_repr(value)} is not applied: the env follows pytest-vla's protocol"
            if name in VLA_EVAL_ENV_PARAMS
            else f"observation_params.{short_repr(name)} is no parameter of vla-eval's LIBERO client: ignored, as there"
            for name, value in params.items()
            if name not in known
        )

    def observation(self, observation: Observation, task: TaskSpec) -> dict[str, Any]:
        images = {"agentview": observation.images["agentview"]}
        payload: dict[str, Any] = {"images": images, "task_description": task.instruction}
        if self.send_wrist_image:
            images["wrist"] = observation.images["wrist"]
        if self.send_state:
            raw = observation.raw
            payload["states"] = np.concatenate(
                [raw["robot0_eef_pos"], self._axis_angle(raw["robot0_eef_quat"]), raw["robot0_gripper_qpos"]]
            )
            if observation.controller_pose is None:
                raise PolicyError("the observation has no controller pose, which controller_states needs")
            position, orientation = observation.controller_pose
            payload["controller_states"] = np.concatenate(
                [
                    np.asarray(position, dtype=np.float32),
                    vla_eval_axis_angle(vla_eval_matrix_to_quat(np.asarray(orientation, dtype=np.float32))),
                    np.asarray(raw["robot0_gripper_qpos"], dtype=np.float32),
                ]
            )
        return payload

    def actions(self, reply: np.ndarray) -> np.ndarray:
        if reply.shape != (ACTION_DIM,):
            raise PolicyError(
                f"the server's action has shape {list(reply.shape)}: vla-eval's LIBERO client executes one "
                f"{ACTION_DIM}-D action per observation, shape [{ACTION_DIM}]"
            )
        action = reply.astype(np.float64)
        action[-1] = -1.0 if action[-1] < 0 else 1.0  # the gripper, binarised as vla-eval's step() does
        return action[None]


class OpenpiClient:
    """openpi's LIBERO client: both cameras at 224x224, the 8-D state, the prompt; the first 5 actions of a chunk."""

    cameras = ("agentview", "wrist")
    state = StateConvention()
    warnings = ()

    def observation(self, observation: Observation, task: TaskSpec) -> dict[str, Any]:
        raw = observation.raw
        return {
            "observation/image": resize_with_pad(observation.images["agentview"], OPENPI_IMAGE_SIZE),
            "observation/wrist_image": resize_with_pad(observation.images["wrist"], OPENPI_IMAGE_SIZE),
            "observation/state": np.concatenate(
                (raw["robot0_eef_pos"], robosuite_axis_angle(raw["robot0_eef_quat"]), raw["robot0_gripper_qpos"])
            ),
            "prompt": str(task.instruction),
        }

    def actions(self, reply: np.ndarray) -> np.ndarray:
        if reply.ndim != 2 or reply.shape[0] < OPENPI_REPLAN_STEPS or reply.shape[1] != ACTION_DIM:
            raise PolicyError(
                f"the server's actions have shape {list(reply.shape)}: openpi's LIBERO client takes "
                f"[H, {ACTION_DIM}] with H >= {OPENPI_REPLAN_STEPS} and executes the first {OPENPI_REPLAN_STEPS}"
            )
        return reply[:OPENPI_REPLAN_STEPS].astype(np.float64)  # the gripper as the server sent it


def vla_eval_params_for(cameras: tuple[str, ...], reads_state: bool, state: StateConvention) -> dict[str, bool]:
    """The ``observation_params`` that make vla-eval's LIBERO client send what an export reads.

    ``pytest-vla serve`` announces them in its hello; ``vla-eval run`` merges them into the benchmark's parameters.
    """
    return {
        "send_wrist_image": "wrist" in cameras,
        "send_state": reads_state,
        "quat_no_antipodal": quaternion_convention(state) == "robosuite",
    }


def vla_eval_unservable(state: StateConvention) -> str | None:
    """Why vla-eval's LIBERO client cannot send the state an export reads, if it cannot."""
    if pose_origin(state) == "controller" and quaternion_convention(state) == "robosuite":
        return (
            "this export reads the controller's state with robosuite's quaternion; vla-eval's controller_states "
            "use the antipodal one"
        )
    return None


def vla_eval_state_key(state: StateConvention) -> str:
    """The key of vla-eval's LIBERO observation holding the state an export reads."""
    return "controller_states" if pose_origin(state) == "controller" else "states"


def _flag(params: Mapping[str, Any], name: str) -> bool:
    value = params.get(name, False)
    if not isinstance(value, bool):
        raise PolicyError(f"observation_params.{name} is {short_repr(value)}, not true or false")
    return value


def robosuite_axis_angle(quat: np.ndarray) -> np.ndarray:
    """robosuite's ``quat2axisangle`` of an x, y, z, w quaternion, as openpi's client copies it (float64)."""
    quat = np.array(quat)  # a copy: the formula clips it in place
    if quat[3] > 1.0:
        quat[3] = 1.0
    elif quat[3] < -1.0:
        quat[3] = -1.0
    den = np.sqrt(1.0 - quat[3] * quat[3])
    if math.isclose(den, 0.0):
        return np.zeros(3)
    return (quat[:3] * 2.0 * math.acos(quat[3])) / den


def _robosuite_axis_angle_float32(quat: np.ndarray) -> np.ndarray:
    """vla-eval's ``_quat_to_axisangle_robosuite``: the same formula, cast to float32."""
    return robosuite_axis_angle(quat).astype(np.float32)


def vla_eval_axis_angle(quat: np.ndarray) -> np.ndarray:
    """``vla_eval.rotation.quat_to_axisangle``: w >= 0 first, float32 out."""
    q = -quat if quat[3] < 0 else quat.copy()
    w = float(np.clip(q[3], -1.0, 1.0))
    sin_half = np.sqrt(1.0 - w * w)
    if sin_half < 1e-8:
        return np.zeros(3, dtype=np.float32)
    angle = 2.0 * np.arccos(w)
    return (q[:3] / sin_half * angle).astype(np.float32)


def vla_eval_matrix_to_quat(matrix: np.ndarray) -> np.ndarray:
    """``vla_eval.rotation.matrix_to_quat``: a rotation matrix's x, y, z, w quaternion (Shepperd's method)."""
    m = np.asarray(matrix, dtype=np.float64)
    trace = m[0, 0] + m[1, 1] + m[2, 2]
    if trace > 0:
        s = 2.0 * np.sqrt(trace + 1.0)
        w, x = 0.25 * s, (m[2, 1] - m[1, 2]) / s
        y, z = (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s
    elif m[0, 0] > m[1, 1] and m[0, 0] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        w, x = (m[2, 1] - m[1, 2]) / s, 0.25 * s
        y, z = (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s
    elif m[1, 1] > m[2, 2]:
        s = 2.0 * np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        w, x = (m[0, 2] - m[2, 0]) / s, (m[0, 1] + m[1, 0]) / s
        y, z = 0.25 * s, (m[1, 2] + m[2, 1]) / s
    else:
        s = 2.0 * np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        w, x = (m[1, 0] - m[0, 1]) / s, (m[0, 2] + m[2, 0]) / s
        y, z = (m[1, 2] + m[2, 1]) / s, 0.25 * s
    return np.array([x, y, z, w])


def resize_with_pad(image: np.ndarray, size: int) -> np.ndarray:
    """``openpi_client.image_tools``' ``convert_to_uint8(resize_with_pad(image, size, size))`` of a uint8 image.

    PIL bilinear to fit, centred on black, as ``tf.image.resize_with_pad``; the same size passes unchanged.
    """
    from PIL import Image

    image = np.ascontiguousarray(image)
    if image.shape[-3:-1] == (size, size):
        return image
    picture = Image.fromarray(image)
    width, height = picture.size
    ratio = max(width / size, height / size)
    resized_height, resized_width = int(height / ratio), int(width / ratio)
    resized = picture.resize((resized_width, resized_height), resample=Image.Resampling.BILINEAR)
    padded = Image.new(resized.mode, (size, size), 0)
    padded.paste(resized, (max(0, int((size - resized_width) / 2)), max(0, int((size - resized_height) / 2))))
    return np.asarray(padded)
