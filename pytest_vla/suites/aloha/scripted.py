"""The demo policy of the ALOHA suite: the ACT authors' scripted waypoints, followed by inverse kinematics.

``--vla-suite aloha --vla-policy demo``. The waypoint schedules are PickAndTransferPolicy's and
InsertionPolicy's (tonyzhaozh/act, scripted_policy.py), written for mocap-driven arms; gym-aloha
takes absolute joint positions, so each step solves damped least squares IK for each arm's six
joints on a private copy of the scene's model. It reads the physics qpos of the first
observation (privileged: the objects' poses) and nothing after: the trajectory runs open loop,
as ACT's does. No camera is rendered.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np

from pytest_vla.report.environment import package_version
from pytest_vla.report.schema import TaskSpec
from pytest_vla.suites.aloha.env import QPOS_KEY
from pytest_vla.suites.aloha.suite import task_name
from pytest_vla.suites.base import Observation, StateConvention

KIND = "scripted"
# A waypoint is a tool-centre point between the fingers, fixed in the gripper_link frame: the offset
# the mocap weld of ACT's end-effector scenes keeps (gym-aloha's bimanual_viperx_end_effector_*.xml).
TCP = np.array([0.13471, 0.0, -0.00205])
# gripper_link's orientation = the mocap's times this (the right arm's base is turned 180 degrees about z).
TO_GRIPPER_LINK = {"left": np.array([1.0, 0.0, 0.0, 0.0]), "right": np.array([0.0, 0.0, 0.0, 1.0])}
ARM_QPOS = {"left": np.arange(0, 6), "right": np.arange(8, 14)}  # each arm's joints (qpos = dof here)
GRIPPER_LINK = {"left": "vx300s_left/gripper_link", "right": "vx300s_right/gripper_link"}
SCENES = {"insertion": "bimanual_viperx_insertion.xml", "transfer_cube": "bimanual_viperx_transfer_cube.xml"}
IK_ITERATIONS, IK_TOLERANCE, IK_DAMPING, IK_MAX_STEP = 50, 1e-6, 1e-3, 0.5

Waypoint = tuple[int, np.ndarray, np.ndarray, float]  # step, TCP position, mocap quaternion (w, x, y, z), gripper


class ScriptedBimanual:
    cameras: tuple[str, ...] = ()
    state = StateConvention()
    provider = "scripted waypoints + IK (in-process)"

    def __init__(self) -> None:
        self._kinematics: dict[str, _Kinematics] = {}
        self._episode: _Episode | None = None
        self._task = ""

    def identity(self) -> dict[str, Any]:
        return {"kind": KIND, "name": "ACT scripted waypoints + IK", "gym-aloha": package_version("gym-aloha")}

    def check(self, suite: Any, tasks: Sequence[TaskSpec]) -> list[str]:
        return []

    def begin_episode(self, seed: int, task: TaskSpec, episode_index: int) -> None:
        self._task, self._episode = task_name(task), None

    def act(self, observation: Observation) -> np.ndarray:
        if self._episode is None:  # the episode's first observation: plan the whole trajectory from it
            if self._task not in self._kinematics:
                self._kinematics[self._task] = _Kinematics(SCENES[self._task])
            self._episode = _Episode(self._kinematics[self._task], self._task, np.asarray(observation.raw[QPOS_KEY]))
        return self._episode.next_action()[None]

    def end_episode(self, success: bool, n_steps: int) -> None:
        self._episode = None

    def close(self) -> None:
        self._kinematics.clear()


class _Kinematics:
    """The scene's model, compiled here as gym-aloha compiles it, with a data of its own for IK."""

    def __init__(self, scene: str) -> None:
        import mujoco
        from gym_aloha.constants import ASSETS_DIR

        self.model = mujoco.MjModel.from_xml_path(str(ASSETS_DIR / scene))
        self.data = mujoco.MjData(self.model)
        self.body = {arm: self.model.body(name).id for arm, name in GRIPPER_LINK.items()}
        self.limits = {arm: self.model.jnt_range[self.model.dof_jntid[joints]] for arm, joints in ARM_QPOS.items()}

    def free_joint_position(self, qpos: np.ndarray, joint: str) -> np.ndarray:
        address = self.model.joint(joint).qposadr[0]
        return np.array(qpos[address : address + 3])

    def tcp(self, arm: str) -> np.ndarray:
        rotation = self.data.xmat[self.body[arm]].reshape(3, 3)
        return self.data.xpos[self.body[arm]] + rotation @ TCP

    def solve(self, arm: str, start: np.ndarray, position: np.ndarray, quaternion: np.ndarray) -> np.ndarray:
        """Joint positions that put ``arm``'s TCP at ``position`` with gripper_link at ``quaternion``."""
        import mujoco

        model, data, body = self.model, self.data, self.body[arm]
        joints = ARM_QPOS[arm]
        low, high = self.limits[arm][:, 0], self.limits[arm][:, 1]
        q = start.copy()
        jacp, jacr = np.zeros((3, model.nv)), np.zeros((3, model.nv))
        error, inverse, difference = np.zeros(6), np.zeros(4), np.zeros(4)
        for _ in range(IK_ITERATIONS):
            data.qpos[joints] = q
            mujoco.mj_kinematics(model, data)
            tcp = self.tcp(arm)
            error[:3] = position - tcp
            mujoco.mju_negQuat(inverse, data.xquat[body])
            mujoco.mju_mulQuat(difference, quaternion, inverse)
            if difference[0] < 0:
                difference = -difference
            mujoco.mju_quat2Vel(error[3:], difference, 1.0)
            if np.linalg.norm(error) < IK_TOLERANCE:
                break
            mujoco.mj_comPos(model, data)
            mujoco.mj_jac(model, data, jacp, jacr, tcp, body)
            jacobian = np.vstack([jacp[:, joints], jacr[:, joints]])
            step = jacobian.T @ np.linalg.solve(jacobian @ jacobian.T + IK_DAMPING**2 * np.eye(6), error)
            norm = np.linalg.norm(step)
            if norm > IK_MAX_STEP:
                step *= IK_MAX_STEP / norm
            q = np.clip(q + step, low, high)
        return q


class _Episode:
    """One episode's trajectory, planned from its first qpos, and the IK solutions so far."""

    def __init__(self, kinematics: _Kinematics, task: str, qpos: np.ndarray) -> None:
        import mujoco

        self.kinematics = kinematics
        kinematics.data.qpos[:] = qpos
        mujoco.mj_kinematics(kinematics.model, kinematics.data)
        start = {arm: kinematics.tcp(arm) for arm in ARM_QPOS}
        self.joints = {arm: np.array(qpos[indices]) for arm, indices in ARM_QPOS.items()}
        self.trajectory = _trajectory(task, kinematics, qpos, start)
        self.step = 0

    def next_action(self) -> np.ndarray:
        action = np.zeros(14)
        for arm, offset in (("left", 0), ("right", 7)):
            position, mocap, gripper = _interpolate(self.trajectory[arm], self.step)
            target = _multiply(mocap / np.linalg.norm(mocap), TO_GRIPPER_LINK[arm])
            self.joints[arm] = self.kinematics.solve(arm, self.joints[arm], position, target)
            action[offset : offset + 6] = self.joints[arm]
            action[offset + 6] = gripper
        self.step += 1
        return action


def _trajectory(
    task: str, kinematics: _Kinematics, qpos: np.ndarray, start: dict[str, np.ndarray]
) -> dict[str, list[Waypoint]]:
    """ACT's waypoints (step, TCP position, mocap quaternion, gripper 0 closed .. 1 open) for each arm."""
    level = np.array([1.0, 0.0, 0.0, 0.0])
    tilted_right = _multiply(level, _about([0, 1, 0], -60))
    if task == "transfer_cube":
        box = kinematics.free_joint_position(qpos, "red_box_joint")
        meet, meet_left = np.array([0, 0.5, 0.25]), _about([1, 0, 0], 90)
        left = [
            (0, start["left"], level, 0),
            (100, _offset(meet, -0.1, 0, -0.02), meet_left, 1),
            (260, _offset(meet, 0.02, 0, -0.02), meet_left, 1),  # approach the cube
            (310, _offset(meet, 0.02, 0, -0.02), meet_left, 0),  # close the gripper
            (360, _offset(meet, -0.1, 0, -0.02), level, 0),
            (400, _offset(meet, -0.1, 0, -0.02), level, 0),
        ]
        right = [
            (0, start["right"], level, 0),
            (90, _offset(box, 0, 0, 0.08), tilted_right, 1),  # above the cube
            (130, _offset(box, 0, 0, -0.015), tilted_right, 1),  # down to it
            (170, _offset(box, 0, 0, -0.015), tilted_right, 0),  # close the gripper
            (200, _offset(meet, 0.05, 0, 0), tilted_right, 0),
            (220, meet, tilted_right, 0),
            (310, meet, tilted_right, 1),  # let go
            (360, _offset(meet, 0.1, 0, 0), tilted_right, 1),
            (400, _offset(meet, 0.1, 0, 0), tilted_right, 1),
        ]
    else:
        peg = kinematics.free_joint_position(qpos, "red_peg_joint")
        socket = kinematics.free_joint_position(qpos, "blue_socket_joint")
        tilted_left = _multiply(level, _about([0, 1, 0], 60))
        meet, lift_right = np.array([0, 0.5, 0.15]), 0.00715
        left = [
            (0, start["left"], level, 0),
            (120, _offset(socket, 0, 0, 0.08), tilted_left, 1),  # above the socket
            (170, _offset(socket, 0, 0, -0.03), tilted_left, 1),
            (220, _offset(socket, 0, 0, -0.03), tilted_left, 0),  # close the gripper
            (285, _offset(meet, -0.1, 0, 0), tilted_left, 0),
            (340, _offset(meet, -0.05, 0, 0), tilted_left, 0),  # insertion
            (400, _offset(meet, -0.05, 0, 0), tilted_left, 0),
        ]
        right = [
            (0, start["right"], level, 0),
            (120, _offset(peg, 0, 0, 0.08), tilted_right, 1),  # above the peg
            (170, _offset(peg, 0, 0, -0.03), tilted_right, 1),
            (220, _offset(peg, 0, 0, -0.03), tilted_right, 0),  # close the gripper
            (285, _offset(meet, 0.1, 0, lift_right), tilted_right, 0),
            (340, _offset(meet, 0.05, 0, lift_right), tilted_right, 0),  # insertion
            (400, _offset(meet, 0.05, 0, lift_right), tilted_right, 0),
        ]
    return {
        arm: [(step, np.asarray(at, float), np.asarray(quat, float), float(grip)) for step, at, quat, grip in points]
        for arm, points in (("left", left), ("right", right))
    }


def _interpolate(waypoints: list[Waypoint], step: int) -> tuple[np.ndarray, np.ndarray, float]:
    """ACT's linear interpolation between the waypoints around ``step``; the last one after the schedule."""
    if step >= waypoints[-1][0]:
        return waypoints[-1][1], waypoints[-1][2], waypoints[-1][3]
    for (t0, x0, q0, g0), (t1, x1, q1, g1) in itertools.pairwise(waypoints):
        if t0 <= step < t1:
            fraction = (step - t0) / (t1 - t0)
            return x0 + (x1 - x0) * fraction, q0 + (q1 - q0) * fraction, g0 + (g1 - g0) * fraction
    raise AssertionError(f"no waypoint before step {step}")


def _offset(point: np.ndarray, dx: float, dy: float, dz: float) -> np.ndarray:
    return point + np.array([dx, dy, dz])


def _multiply(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    import mujoco

    out = np.zeros(4)
    mujoco.mju_mulQuat(out, np.asarray(a, float), np.asarray(b, float))
    return out


def _about(axis: Sequence[float], degrees: float) -> np.ndarray:
    import mujoco

    out = np.zeros(4)
    mujoco.mju_axisAngle2Quat(out, np.asarray(axis, float), np.deg2rad(degrees))
    return out
