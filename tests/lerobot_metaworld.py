"""LeRobot's MetaWorld evaluation written out plainly, independent of pytest-vla: the reference for fidelity tests.

From huggingface/lerobot at 7427f31801f944f5ec9ce53cda02862ce7d1638b:
- src/lerobot/envs/metaworld.py, ``MetaworldEnv``: ``_ensure_env`` (L142-159) builds the env; ``reset``
  (L206-231) calls ``env.seed(seed)`` then ``env.reset(seed=seed)``; ``_format_raw_obs`` (L175-204) renders
  corner2 after every reset and step, flips it with ``np.flip(image, (0, 1))`` and gives ``agent_pos = obs[:4]``;
  ``step`` (L233-276) passes the action on unclipped and unconverted, ends the episode on ``info["success"]``
  and then resets itself (no seed); ``_max_episode_steps = 500`` (L104; configs.py's ``episode_length=400`` is
  never passed on).
- src/lerobot/scripts/lerobot_eval.py, ``eval_policy``/``rollout``: episode i of every task is seeded
  ``--seed`` (default 1000, configs/eval.py L39) + i (L528-533); the policy sees ``agent_pos`` as float32
  (envs/utils.py L113-117) and the task's description (L279-287); its action reaches the env as float32
  numpy (L303-307); the rollout stops at the first termination or truncation, or after 500 steps (L263-272);
  an episode succeeded if any step did (L565).

Env reuse: lerobot-eval builds one vector env per task with ``eval.batch_size`` sub-envs, each holding one
``MetaworldEnv`` that is built lazily on its first reset and reused for every batch, so episode i runs in
sub-env ``i % batch_size`` (metaworld.py L324-338, lerobot_eval.py L519-549). Here one env per task is
cached and reused for all its episodes, which gives the same states (see ``make_env``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

os.environ.setdefault("MUJOCO_GL", "osmesa")

# metaworld_config.json TASK_DESCRIPTIONS (L2-53), verbatim and in its order: the prompt (metaworld.py L105).
TASK_DESCRIPTIONS = {
    "assembly-v3": "Pick up a nut and place it onto a peg",
    "basketball-v3": "Dunk the basketball into the basket",
    "bin-picking-v3": "Grasp the puck from one bin and place it into another bin",
    "box-close-v3": "Grasp the cover and close the box with it",
    "button-press-topdown-v3": "Press a button from the top",
    "button-press-topdown-wall-v3": "Bypass a wall and press a button from the top",
    "button-press-v3": "Press a button",
    "button-press-wall-v3": "Bypass a wall and press a button",
    "coffee-button-v3": "Push a button on the coffee machine",
    "coffee-pull-v3": "Pull a mug from a coffee machine",
    "coffee-push-v3": "Push a mug under a coffee machine",
    "dial-turn-v3": "Rotate a dial 180 degrees",
    "disassemble-v3": "Pick a nut out of a peg",
    "door-close-v3": "Close a door with a revolving joint",
    "door-lock-v3": "Lock the door by rotating the lock clockwise",
    "door-open-v3": "Open a door with a revolving joint",
    "door-unlock-v3": "Unlock the door by rotating the lock counter-clockwise",
    "hand-insert-v3": "Insert the gripper into a hole",
    "drawer-close-v3": "Push and close a drawer",
    "drawer-open-v3": "Open a drawer",
    "faucet-open-v3": "Rotate the faucet counter-clockwise",
    "faucet-close-v3": "Rotate the faucet clockwise",
    "hammer-v3": "Hammer a screw on the wall",
    "handle-press-side-v3": "Press a handle down sideways",
    "handle-press-v3": "Press a handle down",
    "handle-pull-side-v3": "Pull a handle up sideways",
    "handle-pull-v3": "Pull a handle up",
    "lever-pull-v3": "Pull a lever down 90 degrees",
    "peg-insert-side-v3": "Insert a peg sideways",
    "pick-place-wall-v3": "Pick a puck, bypass a wall and place the puck",
    "pick-out-of-hole-v3": "Pick up a puck from a hole",
    "reach-v3": "Reach a goal position",
    "push-back-v3": "Push the puck to a goal",
    "push-v3": "Push the puck to a goal",
    "pick-place-v3": "Pick and place a puck to a goal",
    "plate-slide-v3": "Slide a plate into a cabinet",
    "plate-slide-side-v3": "Slide a plate into a cabinet sideways",
    "plate-slide-back-v3": "Get a plate from the cabinet",
    "plate-slide-back-side-v3": "Get a plate from the cabinet sideways",
    "peg-unplug-side-v3": "Unplug a peg sideways",
    "soccer-v3": "Kick a soccer into the goal",
    "stick-push-v3": "Grasp a stick and push a box using the stick",
    "stick-pull-v3": "Grasp a stick and pull a box with the stick",
    "push-wall-v3": "Bypass a wall and push a puck to a goal",
    "reach-wall-v3": "Bypass a wall and reach a goal",
    "shelf-place-v3": "Pick and place a puck onto a shelf",
    "sweep-into-v3": "Sweep a puck into a hole",
    "sweep-v3": "Sweep a puck off the table",
    "window-open-v3": "Push and open a window",
    "window-close-v3": "Push and close a window",
}

_ENVS: dict[str, Any] = {}  # one env per task, reused for its episodes


def make_env(task: str) -> Any:
    """``MetaworldEnv._ensure_env`` (metaworld.py L151-158), line for line.

    No width/height is passed: MetaWorld 3.0.0's default is 480x480.
    """
    import metaworld

    mt1 = metaworld.MT1(task, seed=42)
    env = mt1.train_classes[task](render_mode="rgb_array", camera_name="corner2")
    env.set_task(mt1.train_tasks[0])
    env.model.cam_pos[2] = [0.75, 0.075, 0.7]  # camera 2 is corner2 in every MT50 model
    env.reset()
    env._freeze_rand_vec = False  # otherwise no randomization
    env.seeded_rand_vec = True  # use seeded RNG so reset(seed=X) controls object positions
    return env


def episode(
    task: str,
    seed: int,
    act: Callable[[dict[str, Any]], np.ndarray],
    max_steps: int = 500,
    render: bool = True,
) -> dict[str, Any]:
    """One episode of ``task`` seeded ``seed`` (lerobot-eval: 1000 + episode index), in the task's cached env.

    ``act`` gets ``pixels`` (480x480x3 uint8, flipped; None when ``render`` is False), ``agent_pos`` (obs[:4] as
    float32, as the policy gets it), ``raw`` (the 39-dim float64 obs) and ``task`` (the prompt). It ends at
    the first success, or at MetaWorld's truncation after 500 steps (LeRobot's cap too) or at ``max_steps``.
    """
    env = _ENVS.get(task)
    if env is None:
        env = _ENVS[task] = make_env(task)

    def observe(raw: np.ndarray) -> dict[str, Any]:
        pixels = np.flip(env.render(), (0, 1)).copy() if render else None
        return {"pixels": pixels, "agent_pos": raw[:4].astype(np.float32), "raw": raw, "task": TASK_DESCRIPTIONS[task]}

    env.seed(seed)  # SawyerXYZEnv.reset ignores its seed; seed() re-creates the RNG the placement is drawn from
    raw, _ = env.reset(seed=seed)
    states, actions = [raw.copy()], []
    for step in range(1, max_steps + 1):
        action = np.asarray(act(observe(raw)), dtype=np.float32)
        if action.ndim != 1:
            raise ValueError(f"Expected action to be 1-D, but got shape {action.shape}")
        actions.append(action)
        raw, _, done, truncated, info = env.step(action)
        states.append(raw.copy())
        if done or bool(info.get("success", 0)):
            env.reset()  # MetaworldEnv.step resets itself on termination (no seed)
            return {"states": states, "actions": actions, "success": True, "steps": step}
        if truncated:  # MetaWorld truncates at its max_path_length, 500
            break
    return {"states": states, "actions": actions, "success": False, "steps": len(actions)}


def close() -> None:
    while _ENVS:
        _ENVS.popitem()[1].close()
