"""A LIBERO task's goal, read from its parsed BDDL: the objects it names, its conditions, their stages.

Everything here reads the simulation and writes none of it: the same predicate functions LIBERO's
``_check_success`` evaluates after every step, robosuite's contact checks, and the joint positions
LIBERO's articulated predicates compare with their objects' ranges.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np

from pytest_vla.report.schema import LIFTED_M, MOVED_SHARE, Stage
from pytest_vla.suites.base import GoalReading

# The surfaces LIBERO scenes stand on (each problem class's `workspace_name`): a goal region on one
# of them is a place of its own, not a part of an object.
WORKSPACES = frozenset({"main_table", "kitchen_table", "living_room_table", "study_table", "coffee_table", "floor"})


# Each articulated predicate -> the articulation ranges (an object's ``object_properties["articulation"]``)
# of the state it asks for and of the opposite one.
ARTICULATED = MappingProxyType(
    {
        "open": ("default_open_ranges", "default_close_ranges"),
        "close": ("default_close_ranges", "default_open_ranges"),
        "turnon": ("default_turnon_ranges", "default_turnoff_ranges"),
        "turnoff": ("default_turnoff_ranges", "default_turnon_ranges"),
    }
)
# The predicates that hold when every joint of the object is in the state (the others: any joint).
EVERY_JOINT = frozenset({"close", "turnoff"})


def goal_objects(problem: Mapping[str, Any]) -> tuple[str, ...]:
    """The objects a parsed BDDL goal names, in goal order, each once.

    A region stands for the object or fixture it belongs to (``basket_1_contain_region`` ->
    ``basket_1``); a region of the workspace itself (``main_table_stove_front_region``) stays a region.
    """
    objects: list[str] = []
    for predicate in problem["goal_state"]:
        for argument in predicate[1:]:
            name = _owner(problem, argument)
            if name not in objects:
                objects.append(name)
    return tuple(objects)


def moved_objects(problem: Mapping[str, Any]) -> dict[str, list[str]]:
    """The objects the goal acts on (each condition's first argument), with the conditions that name them so."""
    moved: dict[str, list[str]] = {}
    for predicate in problem["goal_state"]:
        moved.setdefault(_owner(problem, predicate[1]), []).append(condition(predicate))
    return moved


def condition(predicate: list[str]) -> str:
    """A goal predicate as BDDL writes it: ``(in alphabet_soup_1 basket_1_contain_region)``."""
    return f"({' '.join(predicate)})"


def goal_state(env: Any) -> dict[str, bool]:
    """Each condition of a LIBERO env's goal and whether it holds now (``env``: the BDDL problem env)."""
    return {
        condition(predicate): bool(env._eval_predicate(predicate)) for predicate in env.parsed_problem["goal_state"]
    }


def joint_threshold(articulation: Mapping[str, Any], predicate: str) -> tuple[float, float] | None:
    """Where an articulated predicate starts to hold on one joint, and which way: ``(threshold, +1.0 or -1.0)``.

    LIBERO's objects test ``qpos > min(goal range)`` where the asked-for state's range lies above the
    opposite one's, and ``qpos < max(goal range)`` where it lies below. None where the object gives
    no ranges for it (an object of another package) or they overlap.
    """
    wanted, opposite = (articulation.get(key) or () for key in ARTICULATED[predicate])
    if not wanted or not opposite:
        return None
    if min(wanted) >= max(opposite):
        return float(min(wanted)), 1.0
    if max(wanted) <= min(opposite):
        return float(max(wanted)), -1.0
    return None


@dataclass(frozen=True)
class JointGoal:
    """An articulated goal condition's joints, where the reset left them and where the condition holds."""

    addresses: np.ndarray  # the joints' qpos addresses
    start: np.ndarray  # their positions after the reset
    threshold: float
    direction: float  # +1.0: the condition holds above the threshold; -1.0: below
    every: bool  # the condition needs every joint there (close, turn off), not any (open, turn on)

    @classmethod
    def of(cls, env: Any, predicate: list[str]) -> JointGoal | None:
        """The condition's joints as LIBERO's object states find them; None where it is not articulated."""
        if predicate[0] not in ARTICULATED or len(predicate) != 2:
            return None
        from libero.libero.envs.object_states.base_object_states import SiteObjectState

        state = env.object_states_dict[predicate[1]]
        if isinstance(state, SiteObjectState):  # a drawer: a region with its own joints, its cabinet's ranges
            joints = env.object_sites_dict[predicate[1]].joints
            articulation = env.get_object(state.parent_name).object_properties["articulation"]
        else:
            found = env.get_object(predicate[1])
            joints, articulation = found.joints, found.object_properties["articulation"]
        threshold = joint_threshold(articulation, predicate[0])
        if threshold is None or not joints:
            return None
        addresses = np.array([env.sim.model.get_joint_qpos_addr(joint) for joint in joints], dtype=np.intp)
        return cls(addresses, env.sim.data.qpos[addresses].copy(), *threshold, predicate[0] in EVERY_JOINT)

    def share(self, qpos: np.ndarray) -> float:
        """How much of the way from the reset to the threshold the joints have gone (1.0: the way was none)."""
        way = (self.threshold - self.start) * self.direction
        gone = (qpos[self.addresses] - self.start) * self.direction
        shares = np.where(way > 0, gone / np.where(way > 0, way, 1.0), 1.0)
        return float(shares.min() if self.every else shares.max())


@dataclass(frozen=True)
class ContactGeoms:
    """The geoms of the contact checks as masks over the model's geom ids, made once per reset."""

    gripper: np.ndarray  # every geom of the gripper
    fingerpads: tuple[np.ndarray, np.ndarray]  # the left and the right finger pad's
    objects: dict[str, np.ndarray]  # each moved object or fixture -> its contact geoms

    @classmethod
    def of(cls, env: Any, moved: Mapping[str, list[str]]) -> ContactGeoms:
        model = env.sim.model
        gripper = env.robots[0].gripper

        def ids(names: Any) -> np.ndarray:
            mask = np.zeros(model.ngeom, dtype=bool)
            mask[[model.geom_name2id(name) for name in ([names] if isinstance(names, str) else names)]] = True
            return mask

        models = {name: env.objects_dict.get(name, env.fixtures_dict.get(name)) for name in moved}
        return cls(
            gripper=ids(gripper.contact_geoms),
            fingerpads=(
                ids(gripper.important_geoms["left_fingerpad"]),
                ids(gripper.important_geoms["right_fingerpad"]),
            ),
            objects={name: ids(found.contact_geoms) for name, found in models.items() if found is not None},
        )


@dataclass(frozen=True)
class AtReset:
    """What the goal reading measures against, taken once a reset has settled."""

    rest_heights: dict[str, float]  # each moved object that can be lifted (not a fixture) -> its height
    joints: dict[str, list[JointGoal]]  # each moved object with articulated conditions -> their joints
    bystanders: np.ndarray  # where each object the goal does not name stands, (n, 3)
    geoms: ContactGeoms  # of this reset's model

    @classmethod
    def take(cls, env: Any, moved: Mapping[str, list[str]], bystanders: list[str]) -> AtReset:
        heights = {name: _height(env, name) for name in moved if name in env.objects_dict}
        joints: dict[str, list[JointGoal]] = {}
        for predicate in env.parsed_problem["goal_state"]:
            found = JointGoal.of(env, predicate)
            if found is not None:
                joints.setdefault(_owner(env.parsed_problem, predicate[1]), []).append(found)
        return cls(heights, joints, object_positions(env, bystanders), ContactGeoms.of(env, moved))


def read_goal(env: Any, moved: Mapping[str, list[str]], bystanders: list[str], at_reset: AtReset) -> GoalReading:
    """Where the episode stands with its goal now: the conditions, each moved object's stage, the bystanders' moves."""
    # LIBERO's success is the conjunction of these, checked with the same predicates after each step.
    conditions = goal_state(env)
    displaced = object_positions(env, bystanders) - at_reset.bystanders
    return GoalReading(
        conditions, stages(env, moved, conditions, at_reset), dict(zip(bystanders, displaced, strict=True))
    )


def stages(env: Any, moved: Mapping[str, list[str]], goal: Mapping[str, bool], at_reset: AtReset) -> dict[str, Stage]:
    """The stage each moved object is at now: at its goal, lifted or moved, grasped, touched by the gripper, or not.

    Lifted: above where the reset left it (fixtures are not lifted). Moved: the joints of one of
    its articulated conditions MOVED_SHARE of the way from the reset to where the condition
    starts to hold (LIBERO's own threshold). Touched and grasped are
    robosuite's ``check_contact`` and ``_check_grasp`` (both finger pads on the object), on the
    step's contacts by geom id instead of by name: a tenth of the time.
    """
    rest_heights, geoms = at_reset.rest_heights, at_reset.geoms
    data = env.sim.data._data
    qpos = env.sim.data.qpos
    pairs = data.contact.geom[: data.ncon]
    now: dict[str, Stage] = {}
    for name, conditions in moved.items():
        if any(goal[text] for text in conditions):
            now[name] = Stage.AT_GOAL
        elif name in rest_heights and _height(env, name) - rest_heights[name] > LIFTED_M:
            now[name] = Stage.LIFTED
        elif any(joint.share(qpos) >= MOVED_SHARE for joint in at_reset.joints.get(name, ())):
            now[name] = Stage.MOVED
        elif name not in geoms.objects:
            now[name] = Stage.UNTOUCHED  # a region of the workspace: nothing to touch
        elif all(_touching(pairs, pad, geoms.objects[name]) for pad in geoms.fingerpads):
            now[name] = Stage.GRASPED
        else:
            now[name] = Stage.TOUCHED if _touching(pairs, geoms.gripper, geoms.objects[name]) else Stage.UNTOUCHED
    return now


def _touching(pairs: np.ndarray, first: np.ndarray, second: np.ndarray) -> bool:
    """Whether a contact joins a geom of mask ``first`` to one of mask ``second``, either way round."""
    one, other = pairs[:, 0], pairs[:, 1]
    return bool(np.any((first[one] & second[other]) | (first[other] & second[one])))


def bystanders(env: Any) -> list[str]:
    """The env's movable objects its goal does not name: what a side effect would disturb."""
    named = set(goal_objects(env.parsed_problem))
    return [name for name in env.objects_dict if name not in named]


def object_positions(env: Any, names: list[str]) -> np.ndarray:
    """Where the named objects are now, ``(len(names), 3)`` world positions."""
    return np.array(env.sim.data.body_xpos[[env.obj_body_id[name] for name in names]], dtype=np.float64)


def _height(env: Any, name: str) -> float:
    return float(env.object_states_dict[name].get_geom_state()["pos"][2])


def _owner(problem: Mapping[str, Any], argument: str) -> str:
    owner = problem["regions"].get(argument, {}).get("target")
    return owner if owner is not None and owner not in WORKSPACES else argument
