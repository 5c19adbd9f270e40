"""The episode loop's own logic (budget, chunks, done, error capture) on a scripted env.

What the real LIBERO env does is checked end to end in test_e2e_libero.py.
"""

from __future__ import annotations

import numpy as np

from pytest_vla.errors import EnvFailure, PolicyError
from pytest_vla.rollout.loop import run_episode
from pytest_vla.suites.base import Observation


class ScriptedEnv:
    def __init__(self, done_at: int | None = None, fail_at: int | None = None) -> None:
        self.done_at, self.fail_at = done_at, fail_at
        self.t = 0
        self.reset_with: int | None = None

    def reset(self, episode_index: int) -> Observation:
        self.reset_with, self.t = episode_index, 0
        return Observation(images={}, state=np.full(8, 0.0))

    def step(self, action: np.ndarray) -> tuple[Observation, bool]:
        self.t += 1
        if self.t == self.fail_at:
            raise EnvFailure("rendering_failure", "simulator failed while stepping: GLError")
        return Observation(images={}, state=np.full(8, float(self.t))), self.t == self.done_at


class ChunkPolicy:
    def __init__(self, chunk: int, broken_at_query: int | None = None) -> None:
        self.chunk, self.queries, self.broken_at_query = chunk, [], broken_at_query

    def act(self, observation: Observation) -> np.ndarray:
        self.queries.append(float(observation.state[0]))
        if len(self.queries) == self.broken_at_query:
            raise PolicyError("output 'actions' holds non-finite values (NaN or inf)")
        return np.tile(np.arange(self.chunk, dtype=np.float64)[:, None], (1, 7))


def test_budget_exhausted_is_a_timeout_with_every_step_recorded() -> None:
    env, policy = ScriptedEnv(), ChunkPolicy(chunk=3)
    outcome = run_episode(env, policy, episode_index=4, max_steps=7)
    assert env.reset_with == 4
    assert (outcome.terminal_reason, outcome.n_steps, outcome.success) == ("timeout", 7, False)
    # A chunk of 3 runs fully before the policy sees the state again: queries at t = 0, 3, 6.
    assert policy.queries == [0.0, 3.0, 6.0]
    assert [a[0] for a in outcome.actions] == [0, 1, 2, 0, 1, 2, 0]
    assert [s[0] for s in outcome.states] == [0, 1, 2, 3, 4, 5, 6]


def test_done_ends_the_episode_as_success() -> None:
    outcome = run_episode(ScriptedEnv(done_at=5), ChunkPolicy(chunk=2), episode_index=0, max_steps=50)
    assert (outcome.terminal_reason, outcome.n_steps, outcome.success) == ("success", 5, True)


def test_simulator_and_policy_failures_become_reasons_not_exceptions() -> None:
    rendering = run_episode(ScriptedEnv(fail_at=3), ChunkPolicy(chunk=1), episode_index=0, max_steps=10)
    assert rendering.terminal_reason == "rendering_failure" and "GLError" in rendering.error_message
    assert rendering.n_steps == 2
    policy = run_episode(ScriptedEnv(), ChunkPolicy(chunk=2, broken_at_query=2), episode_index=0, max_steps=10)
    assert policy.terminal_reason == "adapter_error"
    assert policy.error_message == "policy: at step 2: output 'actions' holds non-finite values (NaN or inf)"
