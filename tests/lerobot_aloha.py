"""LeRobot's ALOHA sim evaluation, written out independently of pytest-vla: the reference its suite is checked against.

From huggingface/lerobot at 7427f31801f944f5ec9ce53cda02862ce7d1638b: src/lerobot/envs/configs.py ``AlohaEnv``
(:147-188) and ``EnvConfig.create_envs`` (:83-124), src/lerobot/envs/utils.py ``preprocess_observation``
(:68-117), and lerobot-eval (src/lerobot/scripts/lerobot_eval.py ``rollout`` :167-411, ``eval_policy``
:414-691), which seeds episode i with ``--seed`` (1000, configs/eval.py:39) + i (lerobot_eval.py:528-533).

lerobot-eval wraps the env in a ``SyncVectorEnv`` (autoreset SAME_STEP) when ``--eval.batch_size=1``; one plain
env is the same episode: the vector env only batches the arrays and autoresets after the episode has ended.
(Its AsyncVectorEnv, used when batch_size > 1, died on gym-aloha when tried here; it is not reproduced.)
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

os.environ.setdefault("MUJOCO_GL", "osmesa")

TASKS = {"insertion": "AlohaInsertion-v0", "transfer_cube": "AlohaTransferCube-v0"}
MAX_STEPS = 400  # AlohaEnv.episode_length (configs.py:152); gym-aloha registers 300 (gym_aloha/__init__.py:6,16)


def make_env(task: str) -> Any:
    """``gym.make(gym_id, disable_env_checker=True, **gym_kwargs)`` (configs.py:110-111, 62, 183-188)."""
    import gym_aloha  # noqa: F401  (registers gym_aloha/*; create_envs imports it: configs.py:95-98)
    import gymnasium as gym

    # observation_height/width (configs.py:154-155) are not passed: they only size the features; gym-aloha
    # renders 480x640 whatever it is told (gym_aloha/tasks/sim.py:92).
    return gym.make(
        f"gym_aloha/{TASKS[task]}",
        disable_env_checker=True,
        obs_type="pixels_agent_pos",
        render_mode="rgb_array",
        max_episode_steps=MAX_STEPS,
    )


def instruction(env: Any) -> str:
    """The ``task`` lerobot-eval gives the policy (lerobot_eval.py:280-286): ``task_description``, else ``task``,
    else "". gym-aloha's env has only ``task`` (gym_aloha/env.py:57): "insertion" or "transfer_cube"."""
    for name in ("task_description", "task"):
        try:
            return env.get_wrapper_attr(name)  # what SyncVectorEnv.call does per sub-env
        except AttributeError:
            pass
    return ""


def episode(
    env: Any, seed: int, act: Callable[[dict[str, Any], Any], np.ndarray], max_steps: int = MAX_STEPS
) -> dict[str, Any]:
    """One ``rollout``: reset with the seed, then step until terminated/truncated or ``max_steps``.

    ``act(observation, env)`` gets the top camera as the env returns it (480x640x3 uint8, HWC; LeRobot then makes
    it float32 CHW / 255 with a batch dim, utils.py:86-104, inside the policy's input), ``agent_pos`` as float32
    (utils.py:114) and the task string; ``env`` is there for scripted controllers that read the physics.
    """
    physics = env.unwrapped._env.physics
    # lerobot_eval.py:223: env.reset(seed=seeds, options={NEW_ROLLOUT_OPTION: True}); gym-aloha ignores options
    # and seeds the task RNG and the objects' poses from the seed (gym_aloha/env.py:171-187).
    raw, _ = env.reset(seed=seed)
    task = instruction(env)
    states, qpos, actions = [raw["agent_pos"].copy()], [physics.data.qpos.copy()], []
    success, steps = False, 0
    while steps < max_steps:  # lerobot_eval.py:263,272: max_steps = env._max_episode_steps (400)
        observation = {
            "pixels": raw["pixels"]["top"],
            "agent_pos": raw["agent_pos"].astype(np.float32),
            "task": task,
        }
        # The policy's float32 tensor as numpy (lerobot_eval.py:303), one row of the batch: no clipping anywhere
        # (the env checker is off); MuJoCo clamps ctrl to each actuator's ctrlrange.
        action = np.asarray(act(observation, env), dtype=np.float32)
        raw, _, terminated, truncated, info = env.step(action)
        steps += 1
        actions.append(action)
        states.append(raw["agent_pos"].copy())
        qpos.append(physics.data.qpos.copy())
        # Success: any info["is_success"] up to the first done (lerobot_eval.py:331-339, 565); gym-aloha's
        # terminated is that same flag, reward == 4 (gym_aloha/env.py:201), so success ends the episode.
        success = success or bool(info["is_success"])
        if terminated or truncated:  # lerobot_eval.py:365
            break
    return {"states": states, "qpos": qpos, "actions": actions, "success": success, "steps": steps}


def close(env: Any) -> None:
    """Free dm_control's physics first (its render context's finaliser otherwise complains at exit)."""
    try:
        env.unwrapped._env.physics.free()
    finally:
        env.close()
