"""The ALOHA suite against LeRobot's loop (tests/lerobot_aloha.py): same states, actions and frames."""

from __future__ import annotations

import numpy as np
import pytest

from pytest_vla.rollout.loop import run_episode
from pytest_vla.suites.aloha import AlohaSuite
from pytest_vla.suites.aloha.scripted import ScriptedBimanual
from pytest_vla.suites.base import Observation, StateConvention
from tests import lerobot_aloha

pytestmark = pytest.mark.aloha

SEED = 1000  # lerobot-eval's
STEPS = 25  # the reference renders three 480x640 cameras a step (0.4 s): a prefix of each episode


class _Recorded:
    """The demo policy, keeping what each episode's observations were: the frames and the physics' qpos."""

    def __init__(self) -> None:
        self.policy, self.frames, self.qpos = ScriptedBimanual(), [], []

    def begin_episode(self, seed, task, episode):
        self.policy.begin_episode(seed, task, episode)
        self.frames, self.qpos = [], []

    def act(self, observation: Observation) -> np.ndarray:
        self.frames.append(observation.images.get("top"))
        self.qpos.append(observation.raw["qpos"])
        return self.policy.act(observation)


@pytest.mark.parametrize("selection", ["aloha:insertion", "aloha:transfer_cube"])
def test_episodes_equal_lerobots_in_any_order_and_with_no_camera(selection: str) -> None:
    suite = AlohaSuite()
    (task,) = suite.resolve_tasks([selection])
    ours: dict[tuple, tuple] = {}
    for cameras in (("top",), ()):
        env = suite.make_env(task, cameras, SEED, StateConvention())
        recorded = _Recorded()
        try:
            for episode in (1, 0):  # out of order in one env; lerobot-eval runs them in order
                recorded.begin_episode(SEED, task, episode)
                outcome = run_episode(env, recorded, episode, max_steps=STEPS)
                ours[cameras, episode] = (outcome, recorded.frames, np.array(recorded.qpos))
        finally:
            env.close()
    for episode in (0, 1):
        outcome, frames, qpos = ours[("top",), episode]
        unrendered, _, unrendered_qpos = ours[(), episode]
        np.testing.assert_array_equal(unrendered_qpos, qpos)  # rendering nothing changes no state
        np.testing.assert_array_equal(np.array(unrendered.actions), np.array(outcome.actions))

        reference_env = lerobot_aloha.make_env(task.instruction)
        policy = ScriptedBimanual()
        policy.begin_episode(SEED, task, episode)
        seen = []

        def act(observation, env, policy=policy, seen=seen):
            seen.append(observation)
            physics_qpos = env.unwrapped._env.physics.data.qpos.copy()
            return policy.act(Observation(images={}, state=observation["agent_pos"], raw={"qpos": physics_qpos}))[0]

        try:
            reference = lerobot_aloha.episode(reference_env, SEED + episode, act, max_steps=STEPS)
        finally:
            lerobot_aloha.close(reference_env)
        assert seen[0]["task"] == task.instruction
        np.testing.assert_array_equal(np.array(outcome.actions, dtype=np.float32), np.array(reference["actions"]))
        np.testing.assert_array_equal(qpos, np.array(reference["qpos"][:-1]))
        np.testing.assert_array_equal(np.array(outcome.states), np.array([o["agent_pos"] for o in seen]))
        for step in (0, STEPS - 1):
            np.testing.assert_array_equal(frames[step], seen[step]["pixels"])
        assert frames[0].std() > 10  # a scene, not a blank
    assert not np.array_equal(ours[(), 0][2][0], ours[(), 1][2][0])  # the seeds place the objects apart


def test_tasks_are_selected_by_index_and_name() -> None:
    suite = AlohaSuite()
    assert [t.key for t in suite.resolve_tasks([])] == ["aloha:0", "aloha:1"]
    assert suite.resolve_tasks(["transfer_cube"]) == suite.resolve_tasks(["aloha:1"])
    assert [t.instruction for t in suite.resolve_tasks([])] == ["insertion", "transfer_cube"]  # lerobot-eval's task
