"""openpi's LIBERO loop (examples/libero/main.py), written out for the end-to-end tests and benchmarks/throughput.py."""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

SETTLE_STEPS = 10
SETTLE_ACTION = [0.0] * 6 + [-1.0]


def run_episode(
    env: Any, session: Any, init_state: np.ndarray, seed: int, max_steps: int, image_size: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """One episode on a LIBERO env that renders both cameras; the actions taken and the states they answered.

    ``session``: an onnxruntime session with inputs ``state`` and, when ``image_size`` is given,
    ``image`` (agentview resized to that size, NCHW, 0..1), and output ``actions`` (a chunk).
    """
    from PIL import Image

    env.seed(seed)
    env.reset()
    obs = env.set_init_state(init_state)
    for _ in range(SETTLE_STEPS):
        obs, _, _, _ = env.step(SETTLE_ACTION)
    actions, states, plan = [], [], deque()
    for _ in range(max_steps):
        image = np.ascontiguousarray(obs["agentview_image"][::-1, ::-1])
        np.ascontiguousarray(obs["robot0_eye_in_hand_image"][::-1, ::-1])  # openpi reads the wrist camera too
        state = np.concatenate(
            (obs["robot0_eef_pos"], quat2axisangle(obs["robot0_eef_quat"]), obs["robot0_gripper_qpos"])
        )
        feed = {"state": state.astype(np.float32)[None]}
        if image_size is not None:  # resized at every step, as openpi does
            resized = np.asarray(Image.fromarray(image).resize((image_size, image_size), Image.Resampling.BILINEAR))
            feed["image"] = (resized.astype(np.float32) / 255.0).transpose(2, 0, 1)[None]
        if not plan:
            plan.extend(session.run(["actions"], feed)[0][0].astype(np.float64))
        action = plan.popleft()
        states.append(state)
        actions.append(action)
        obs, _, done, _ = env.step(action.tolist())
        if done:
            break
    return np.array(actions), np.array(states)


def quat2axisangle(quat: np.ndarray) -> np.ndarray:
    """Copied in substance from openpi examples/libero/main.py (itself robosuite's formula)."""
    quat = quat.copy()
    quat[3] = min(max(quat[3], -1.0), 1.0)
    den = np.sqrt(1.0 - quat[3] * quat[3])
    if np.isclose(den, 0.0):
        return np.zeros(3)
    return (quat[:3] * 2.0 * np.arccos(quat[3])) / den
