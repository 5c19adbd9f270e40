"""LIBERO's state conventions: which end-effector pose the 8-D state carries, and how its rotation is written."""

from __future__ import annotations

from types import MappingProxyType

from pytest_vla.suites.base import StateConvention

# The options an export's state input may name, each with its choices, the default first.
# ``from``: the observation's end-effector pose, or the arm controller's own estimate of it.
# ``quaternion``: axis-angle by robosuite's formula (angle in [0, 2 pi)), or after flipping the
# quaternion to w >= 0 (angle in [0, pi]).
STATE_OPTIONS = MappingProxyType({"from": ("observation", "controller"), "quaternion": ("robosuite", "antipodal")})


def pose_origin(state: StateConvention) -> str:
    return state.choice("from", STATE_OPTIONS)


def quaternion_convention(state: StateConvention) -> str:
    return state.choice("quaternion", STATE_OPTIONS)
