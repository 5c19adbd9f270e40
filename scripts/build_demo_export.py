"""Build the demo export shipped in ``pytest_vla/export/demo``: a scripted pick-and-place policy.

The policy reads privileged state (the gripper's position and fingers, and the positions of the
objects the task's goal names) and is memoryless: every action is a function of the current
observation only. Phases follow from the state, not from a counter:

    release   the object is above the goal object         -> open the gripper, hold still
    carry     the object sits between settled fingers     -> lift straight up, then fly above the goal
    grasp     the fingers are around the object           -> close the gripper
    back off  the fingers are closed on nothing           -> open the gripper and rise
    approach  otherwise                                   -> funnel down onto the object, gripper open,
              turning the hand while the fingers rest on the object's top (search)

docs/demo.md explains the choices and lists the measured success rates.

Run it after changing the policy (needs the ``test`` extra): ``python scripts/build_demo_export.py``.
``tests/test_demo_export.py`` rebuilds the graph and fails when it differs from the committed file.
"""

from __future__ import annotations

import json
from pathlib import Path

import onnx
from onnxscript import FLOAT, script
from onnxscript import opset18 as op

EXPORT_DIR = Path(__file__).resolve().parent.parent / "pytest_vla" / "export" / "demo"
MODEL_NAME = "demo_policy.onnx"

# Distances in metres, in LIBERO's world frame (z up); actions are OSC_POSE deltas in [-1, 1].
GAIN = 20.0  # action per metre of position error: OSC_POSE moves its set point 0.05 m per unit action
GRASP_FLOOR = 0.012  # lowest grasp height: flat objects are gripped with the fingertips just above the floor
GRIP_DEPTH = 0.025  # grasp this far below the object's top (objects stand on the floor: top = 2 x centre height)
HOVER = 0.08  # approach height above the object's top when not yet aligned
ALIGN = 0.005  # descend only while horizontally this close to the object ...
FUNNEL = 20.0  # ... rising this many metres per metre of horizontal error beyond it
AT_GRASP = 0.012  # the fingers are around the object within this distance of the grasp point
HOLD_XY = 0.02  # a held object stays this close to the fingers horizontally ...
HOLD_BELOW = 0.02  # ... and the fingers at most this far below its centre ...
HOLD_ABOVE = 0.07  # ... or this far above it
OPEN_WIDTH = 0.075  # finger opening above which the gripper counts as open
SETTLED_SPEED = 0.01  # finger speed below which a closing grip has settled
CARRY_HEIGHT = 0.30  # carry height of the gripper
LIFT_FIRST = 0.05  # rise to within this of the carry height before moving sideways
RELEASE_XY = 0.02  # open once the object is this close above the goal object ...
RELEASE_ABOVE = 0.12  # ... and this high above it
SEARCH_BAND = 0.05  # fingers stuck this close above the grasp point rest on the object: turn the hand ...
SEARCH_RATE = 0.1  # ... at this yaw action until they slip around it


OBJECT_POSITIONS = FLOAT[1, "k", 3]  # k objects of interest, k varies by task


@script()
def demo_policy(
    eef_pos: FLOAT[1, 3], gripper_qpos: FLOAT[1, 2], gripper_qvel: FLOAT[1, 2], objects: OBJECT_POSITIONS
) -> FLOAT[1, 7]:
    # objects[:, 0] is the object to move, objects[:, -1] the one to put it in (goal order).
    target_object = op.Squeeze(op.Gather(objects, op.Constant(value_ints=[0]), axis=1), op.Constant(value_ints=[1]))
    goal_object = op.Squeeze(op.Gather(objects, op.Constant(value_ints=[-1]), axis=1), op.Constant(value_ints=[1]))
    xy = op.Constant(value_ints=[0, 1])
    z = op.Constant(value_ints=[2])
    eef_xy = op.Gather(eef_pos, xy, axis=1)
    eef_z = op.Gather(eef_pos, z, axis=1)
    object_xy = op.Gather(target_object, xy, axis=1)
    object_z = op.Gather(target_object, z, axis=1)
    goal_xy = op.Gather(goal_object, xy, axis=1)
    goal_z = op.Gather(goal_object, z, axis=1)

    object_top = op.Mul(object_z, op.Constant(value_float=2.0))
    grasp_z = op.Max(op.Sub(object_top, op.Constant(value_float=GRIP_DEPTH)), op.Constant(value_float=GRASP_FLOOR))
    grasp_point = op.Concat(object_xy, grasp_z, axis=1)
    off_xy = op.ReduceL2(op.Sub(eef_xy, object_xy), op.Constant(value_ints=[1]), keepdims=1)
    off_z = op.Abs(op.Sub(eef_z, grasp_z))
    width = op.Sub(
        op.Gather(gripper_qpos, op.Constant(value_ints=[0]), axis=1),
        op.Gather(gripper_qpos, op.Constant(value_ints=[1]), axis=1),
    )
    finger_speed = op.ReduceL1(gripper_qvel, op.Constant(value_ints=[1]), keepdims=1)

    gripper_open = op.Greater(width, op.Constant(value_float=OPEN_WIDTH))
    at_grasp = op.And(
        op.Less(off_xy, op.Constant(value_float=AT_GRASP)), op.Less(off_z, op.Constant(value_float=AT_GRASP))
    )
    eef_above_object = op.Sub(eef_z, object_z)
    in_hand = op.And(
        op.Less(off_xy, op.Constant(value_float=HOLD_XY)),
        op.And(
            op.Greater(eef_above_object, op.Constant(value_float=-HOLD_BELOW)),
            op.Less(eef_above_object, op.Constant(value_float=HOLD_ABOVE)),
        ),
    )
    holding = op.And(
        op.And(in_hand, op.Not(gripper_open)), op.Less(finger_speed, op.Constant(value_float=SETTLED_SPEED))
    )
    over_goal = op.And(
        op.Less(
            op.ReduceL2(op.Sub(object_xy, goal_xy), op.Constant(value_ints=[1]), keepdims=1),
            op.Constant(value_float=RELEASE_XY),
        ),
        op.Greater(op.Sub(object_z, goal_z), op.Constant(value_float=RELEASE_ABOVE)),
    )
    release = op.And(over_goal, in_hand)

    carry_z = op.Expand(op.Constant(value_float=CARRY_HEIGHT), op.Shape(eef_z))
    lifted = op.Greater(eef_z, op.Sub(carry_z, op.Constant(value_float=LIFT_FIRST)))
    carry_target = op.Concat(op.Where(lifted, goal_xy, eef_xy), carry_z, axis=1)
    hover_z = op.Add(object_top, op.Constant(value_float=HOVER))
    misalignment = op.Relu(op.Sub(off_xy, op.Constant(value_float=ALIGN)))
    approach_z = op.Min(op.Add(grasp_z, op.Mul(misalignment, op.Constant(value_float=FUNNEL))), hover_z)
    approach_target = op.Concat(object_xy, approach_z, axis=1)
    back_off_target = op.Concat(eef_xy, hover_z, axis=1)

    # Later rules win: approach < back off < grasp < carry < release.
    target = op.Where(op.Not(gripper_open), back_off_target, approach_target)
    target = op.Where(at_grasp, grasp_point, target)
    target = op.Where(holding, carry_target, target)
    target = op.Where(release, eef_pos, target)
    close = op.And(op.Or(at_grasp, holding), op.Not(release))
    gripper = op.Where(close, op.Constant(value_floats=[1.0]), op.Constant(value_floats=[-1.0]))

    motion = op.Clip(
        op.Mul(op.Sub(target, eef_pos), op.Constant(value_float=GAIN)),
        op.Constant(value_float=-1.0),
        op.Constant(value_float=1.0),
    )
    above_grasp = op.Sub(eef_z, grasp_z)
    searching = op.And(
        op.And(
            op.Less(off_xy, op.Constant(value_float=AT_GRASP)),
            op.Greater(above_grasp, op.Constant(value_float=AT_GRASP)),
        ),
        op.And(op.Less(above_grasp, op.Constant(value_float=SEARCH_BAND)), gripper_open),
    )
    yaw = op.Where(searching, op.Constant(value_floats=[SEARCH_RATE]), op.Constant(value_floats=[0.0]))
    rotation = op.Concat(op.Expand(op.Constant(value_floats=[0.0, 0.0]), op.Constant(value_ints=[1, 2])), yaw, axis=1)
    action = op.Concat(motion, rotation, gripper, axis=1)
    return action


MANIFEST = {
    "format": "vla-export/1",
    "model": MODEL_NAME,
    "inputs": {
        "eef_pos": {"source": "obs", "key": "robot0_eef_pos"},
        "gripper_qpos": {"source": "obs", "key": "robot0_gripper_qpos"},
        "gripper_qvel": {"source": "obs", "key": "robot0_gripper_qvel"},
        "objects": {"source": "objects_of_interest"},
    },
    "action": {"output": "action", "dim": 7},
}


def build_model() -> onnx.ModelProto:
    model = demo_policy.to_model_proto()
    model.ir_version = 9  # onnxruntime 1.31 rejects newer IR versions
    onnx.checker.check_model(model, full_check=True)
    return model


def main() -> None:
    EXPORT_DIR.mkdir(parents=True, exist_ok=True)
    onnx.save(build_model(), EXPORT_DIR / MODEL_NAME)
    (EXPORT_DIR / "vla_export.json").write_text(json.dumps(MANIFEST, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {EXPORT_DIR}")


if __name__ == "__main__":
    main()
