"""Where a MetaWorld episode stands with its goal: its success, and how far the gripper got with the task's object.

MetaWorld's goal is one condition, its own ``info["success"]`` (a task-specific threshold, mostly on
the object's distance to its target), so a row's progress is its success and its stage says how far
it got. MetaWorld's own ``_get_id_main_object`` fails on 33 of the 50 tasks in 3.0.0 (mujoco-py's
``geom_name2id``, an ``objGeom`` the scene lacks, None) and several of its main geoms are visual only,
never in contact; so each task names its object here by the body that carries the object's joint,
and contacts count on every geom under that body (measured on all 50 with MetaWorld's experts:
docs/metaworld.md). A jointed object's goal state is where its joint stands when the task
succeeds, which MetaWorld's success (a distance of a handle, a button or a dial's tip to a target)
does not say in joint terms: so the table gives each one's travel to success, measured with the
experts. The other objects that can move (the coffee machine's mug or button: each body with a
joint of its own, outside the robot) are what the goal leaves alone, where the task's object is
not a tool for moving them (the hammer's nail, the stick's container). Reading them changes
nothing in the simulation.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, NamedTuple

import numpy as np

from pytest_vla.report.schema import LIFTED_M, MOVED_SHARE, Stage
from pytest_vla.suites.base import GoalReading

SUCCESS = "(success)"  # the goal's one condition: MetaWorld's info["success"]
_FREE_JOINT = 0  # mujoco's mjJNT_FREE


class TaskObject(NamedTuple):
    """What a task's goal acts on."""

    name: str  # in rows
    where: str  # the body carrying its joint or, where that body has no name, "joint:NAME"
    # A jointed object: how far its one joint goes from the reset to the task's success (radians or
    # metres, signed), the mean over 10 episodes of MetaWorld's experts (docs/metaworld.md).
    travel: float | None = None
    # What the object is a tool for moving, as ``where`` names a body: the goal acts on it too.
    tool_for: str | None = None


# Each MT50 task -> (name, where[, travel[, tool_for]]), as TaskObject.
OBJECTS = MappingProxyType(
    {
        task: TaskObject(*entry)
        for task, entry in {
            "assembly-v3": ("RoundNut", "RoundNut"),
            "basketball-v3": ("bsktball", "bsktball"),
            "bin-picking-v3": ("obj", "obj"),
            "box-close-v3": ("boxbodytop", "boxbodytop"),
            "button-press-topdown-v3": ("button", "button", -0.0712),
            "button-press-topdown-wall-v3": ("button", "button", -0.0709),
            "button-press-v3": ("button", "button", -0.0738),
            "button-press-wall-v3": ("button", "button", -0.0641),
            "coffee-button-v3": ("cmbutton", "cmbutton", 0.0166),
            "coffee-pull-v3": ("obj", "obj"),
            "coffee-push-v3": ("obj", "obj"),
            "dial-turn-v3": ("dial", "joint:knob_Joint_1", -1.45),
            "disassemble-v3": ("RoundNut", "RoundNut"),
            "door-close-v3": ("door_link", "door_link", 1.42),
            "door-lock-v3": ("lock_link", "lock_link", 1.21),
            "door-open-v3": ("door_link", "door_link", -1.39),
            "door-unlock-v3": ("lock_link", "lock_link", -1.26),
            "drawer-close-v3": ("drawer_link", "drawer_link", 0.121),
            "drawer-open-v3": ("drawer_link", "drawer_link", -0.164),
            "faucet-close-v3": ("faucet_link2", "faucet_link2", -1.29),
            "faucet-open-v3": ("faucet_link2", "faucet_link2", 1.4),
            "hammer-v3": ("hammerbody", "hammerbody", None, "nail_link"),
            "hand-insert-v3": ("obj", "obj"),
            "handle-press-side-v3": ("handle_link", "handle_link", -0.0796),
            "handle-press-v3": ("handle_link", "handle_link", -0.0801),
            "handle-pull-side-v3": ("handle_link", "handle_link", 0.0571),
            "handle-pull-v3": ("handle_link", "handle_link", 0.0587),
            "lever-pull-v3": ("lever_link1", "lever_link1", -1.45),
            "peg-insert-side-v3": ("peg", "peg"),
            "peg-unplug-side-v3": ("plug1", "plug1"),
            "pick-out-of-hole-v3": ("obj", "obj"),
            "pick-place-v3": ("obj", "obj"),
            "pick-place-wall-v3": ("obj", "obj"),
            "plate-slide-back-side-v3": ("puck", "joint:goal_slidex"),
            "plate-slide-back-v3": ("puck", "joint:goal_slidex"),
            "plate-slide-side-v3": ("puck", "joint:goal_slidex"),
            "plate-slide-v3": ("puck", "joint:goal_slidex"),
            "push-back-v3": ("obj", "obj"),
            "push-v3": ("obj", "obj"),
            "push-wall-v3": ("obj", "obj"),
            "reach-v3": ("obj", "obj"),
            "reach-wall-v3": ("obj", "obj"),
            "shelf-place-v3": ("obj", "obj"),
            "soccer-v3": ("soccer_ball", "soccer_ball"),
            "stick-pull-v3": ("stick", "stick", None, "joint:obj_slidex"),
            "stick-push-v3": ("stick", "stick", None, "joint:obj_slidex"),
            "sweep-into-v3": ("obj", "obj"),
            "sweep-v3": ("obj", "obj"),
            "window-close-v3": ("windowb_a", "windowb_a", -0.163),
            "window-open-v3": ("windowb_a", "windowb_a", 0.196),
        }.items()
    }
)


def _body(model: Any, where: str) -> int:
    """The body a table entry names: by its name, or ``joint:NAME`` by the joint it carries."""
    kind, _, joint = where.partition(":")
    return int(model.jnt_bodyid[model.joint(joint).id]) if kind == "joint" else int(model.body(where).id)


def _subtree(model: Any, root: int) -> np.ndarray:
    """A mask over body ids: body ``root`` and every body under it."""
    inside = np.zeros(model.nbody, dtype=bool)
    inside[root] = True
    for body in range(root + 1, model.nbody):  # mujoco numbers a body after its parent
        inside[body] = inside[model.body_parentid[body]]
    return inside


@dataclass(frozen=True)
class Rest:
    """Where the reset left things: the object's height and joint position (0.0 where it has no
    travel), and each bystander's position, (n, 3)."""

    height: float
    joint: float
    bystanders: np.ndarray


@dataclass(frozen=True)
class GoalReader:
    """One task's object and the gripper's geoms, resolved once per env; :meth:`read` after every step."""

    name: str
    body: int  # the body carrying the object's joint
    lifts: bool  # a free object, which can be lifted (an articulated one cannot)
    joint: int  # a jointed object's joint's qpos address (-1: none is read)
    travel: float | None  # its TaskObject.travel
    geoms: np.ndarray  # mask: the object's geoms
    hand: np.ndarray  # mask: every geom of the gripper (the right_hand subtree)
    pads: tuple[np.ndarray, np.ndarray]  # masks: the left and the right finger pad
    bystanders: dict[str, int]  # each other body with a joint of its own, outside the robot, by name -> body

    @classmethod
    def of(cls, model: Any, task_name: str) -> GoalReader:
        name, where, travel, tool_for = OBJECTS[task_name]
        body = _body(model, where)
        first = model.body_jntadr[body]
        lifts = bool(model.body_jntnum[body]) and int(model.jnt_type[first]) == _FREE_JOINT

        def geom(name: str) -> np.ndarray:
            mask = np.zeros(model.ngeom, dtype=bool)
            mask[model.geom(name).id] = True
            return mask

        acted_on = _subtree(model, body) | _subtree(model, model.body("base").id)  # the object's and the robot's
        if tool_for is not None:
            acted_on |= _subtree(model, _body(model, tool_for))
        bystanders = {
            model.body(other).name or f"joint:{model.joint(model.body_jntadr[other]).name}": other
            for other in range(1, model.nbody)
            if model.body_jntnum[other] and not acted_on[other]
        }
        return cls(
            name, body, lifts, int(model.jnt_qposadr[first]) if travel is not None else -1, travel,
            _subtree(model, body)[model.geom_bodyid], _subtree(model, model.body("right_hand").id)[model.geom_bodyid],
            (geom("leftpad_geom"), geom("rightpad_geom")), bystanders,
        )  # fmt: skip

    def at_reset(self, model: Any, data: Any) -> tuple[Rest, GoalReading]:
        """Where the reset left things, and the goal there, read on a copy brought up to date: MetaWorld's
        resets move bodies (the coffee machine, the window) without computing where they now are,
        which its next step does."""
        import mujoco

        placed = copy.copy(data)  # mujoco's copy of the whole MjData
        mujoco.mj_forward(model, placed)
        rest = Rest(
            float(placed.xpos[self.body][2]),
            float(placed.qpos[self.joint]) if self.travel is not None else 0.0,
            placed.xpos[list(self.bystanders.values())].copy(),
        )
        return rest, self.read(placed, False, rest)

    def read(self, data: Any, success: bool, rest: Rest) -> GoalReading:
        """The goal now. Grasped is MetaWorld's ``touching_object``: both pads on it with a positive force.

        Lifted: a free object more than LIFTED_M above where the reset left it; moved: a jointed one
        MOVED_SHARE of its travel from where the reset left it; either while the gripper touches it
        (some objects settle a few centimetres after the reset on their own, and a door swings a
        fifth of the way shut).
        """
        pairs = data.contact.geom[: data.ncon]
        touched = bool(np.any(_joins(pairs, self.hand, self.geoms)))
        if success:
            stage = Stage.AT_GOAL
        elif touched and self.lifts and float(data.xpos[self.body][2]) - rest.height > LIFTED_M:
            stage = Stage.LIFTED
        elif touched and self.travel is not None and (data.qpos[self.joint] - rest.joint) / self.travel >= MOVED_SHARE:
            stage = Stage.MOVED
        elif touched and self._grasped(pairs, data):
            stage = Stage.GRASPED
        else:
            stage = Stage.TOUCHED if touched else Stage.UNTOUCHED
        moved = data.xpos[list(self.bystanders.values())] - rest.bystanders
        return GoalReading({SUCCESS: success}, {self.name: stage}, dict(zip(self.bystanders, moved, strict=True)))

    def _grasped(self, pairs: np.ndarray, data: Any) -> bool:
        """Both pads on the object, each contact pushing (a positive normal force)."""
        pushing = data.efc_force[data.contact.efc_address[: data.ncon]] > 0
        return all(np.any(_joins(pairs, pad, self.geoms) & pushing) for pad in self.pads)


def _joins(pairs: np.ndarray, first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Per contact: whether it joins a geom of mask ``first`` to one of mask ``second``, either way round."""
    one, other = pairs[:, 0], pairs[:, 1]
    return (first[one] & second[other]) | (first[other] & second[one])
