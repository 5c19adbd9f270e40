"""The episode loop: reset, then query the policy and step until done or out of budget.

It never raises for a harness problem: whatever stops an episode becomes its ``terminal_reason``
and ``error_message``, so a finished result is never lost to an exception.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from pytest_vla.errors import EnvFailure, PolicyError, one_line
from pytest_vla.report.schema import Stage, TerminalReason
from pytest_vla.rollout import interrupts
from pytest_vla.suites.base import Observation, SuiteEnv


class Policy(Protocol):
    def act(self, observation: Observation) -> np.ndarray:
        """The ``(K, action_dim)`` actions to run before the policy is asked again."""


@dataclass
class EpisodeOutcome:
    terminal_reason: TerminalReason
    n_steps: int
    wall_clock_s: float
    error_message: str | None = None
    actions: list[np.ndarray] = field(default_factory=list)  # what env.step received, after settling
    states: list[np.ndarray] = field(default_factory=list)  # the state observed before each action
    goal_at_end: Mapping[str, bool] | None = None  # the goal's conditions as the last observation shows them
    goal_best: Mapping[str, bool] | None = None  # the first observation that held the most of them at once
    goal_best_step: int = 0  # policy steps taken when goal_best was observed (0: the reset's observation)
    furthest_stages: dict[str, Stage] = field(default_factory=dict)  # per object the goal acts on
    # Per object the goal does not name: the furthest it got from where the reset left it, and its
    # lowest height against that (negative: below), in metres; None where the suite tells none.
    bystander_moves: dict[str, float] | None = None
    bystander_drops: dict[str, float] | None = None

    @property
    def success(self) -> bool:
        return self.terminal_reason is TerminalReason.SUCCESS

    def see_goal(self, observation: Observation) -> None:
        reading = observation.goal
        if reading is None:
            return
        conditions = reading.conditions
        self.goal_at_end = conditions
        if self.goal_best is None or sum(conditions.values()) > sum(self.goal_best.values()):
            self.goal_best, self.goal_best_step = conditions, self.n_steps
        for name, stage in reading.stages.items():
            if name not in self.furthest_stages or stage.rank > self.furthest_stages[name].rank:
                self.furthest_stages[name] = stage
        if reading.bystanders is None:
            return
        moves, drops = self.bystander_moves or {}, self.bystander_drops or {}
        for name, displacement in reading.bystanders.items():
            moves[name] = max(moves.get(name, 0.0), float(np.linalg.norm(displacement)))
            drops[name] = min(drops.get(name, 0.0), float(displacement[2]))
        self.bystander_moves, self.bystander_drops = moves, drops


def run_episode(
    env: SuiteEnv,
    policy: Policy,
    episode_index: int,
    max_steps: int,
    timeout_s: float | None = None,
    watch: Callable[[Observation], None] | None = None,
) -> EpisodeOutcome:
    """Run one episode; ``wall_clock_s`` covers the reset (with its settle steps) to the end.

    Past ``timeout_s`` of wall clock the episode ends as ``timeout`` too, with a message that says so.
    ``watch`` sees every observation, the reset's first (a video's frames); it changes nothing.
    """
    started = time.perf_counter()
    outcome = EpisodeOutcome(terminal_reason=TerminalReason.TIMEOUT, n_steps=0, wall_clock_s=0.0)
    deadline = started + timeout_s if timeout_s is not None else float("inf")
    try:
        _loop(env, policy, episode_index, max_steps, deadline, outcome, watch or _unwatched)
        out_of_time = outcome.n_steps < max_steps  # the loop stopped for the clock, not the budget
        if outcome.terminal_reason is TerminalReason.TIMEOUT and out_of_time:
            outcome.error_message = (
                f"wall-clock timeout: not done after {timeout_s:g} s ({outcome.n_steps} of {max_steps} policy steps)"
            )
    except EnvFailure as exc:
        outcome.terminal_reason, outcome.error_message = exc.terminal_reason, str(exc)
    except PolicyError as exc:
        outcome.terminal_reason, outcome.error_message = TerminalReason.ADAPTER_ERROR, f"policy: {exc}"
    outcome.wall_clock_s = time.perf_counter() - started
    return outcome


def _loop(
    env: SuiteEnv,
    policy: Policy,
    episode_index: int,
    max_steps: int,
    deadline: float,
    outcome: EpisodeOutcome,
    watch: Callable[[Observation], None],
) -> None:
    observation = env.reset(episode_index)
    outcome.see_goal(observation)
    watch(observation)
    chunk: deque[np.ndarray] = deque()
    while outcome.n_steps < max_steps and time.perf_counter() <= deadline:
        interrupts.check()
        if not chunk:
            chunk.extend(_query(policy, observation, outcome.n_steps))
        action = chunk.popleft()
        outcome.states.append(np.asarray(observation.state, dtype=np.float64))
        outcome.actions.append(action)
        observation, done = env.step(action)
        outcome.n_steps += 1
        outcome.see_goal(observation)
        watch(observation)
        if done:
            outcome.terminal_reason = TerminalReason.SUCCESS
            return


def _unwatched(observation: Observation) -> None:
    pass


def _query(policy: Policy, observation: Observation, step: int) -> np.ndarray:
    try:
        return policy.act(observation)
    except PolicyError as exc:
        raise PolicyError(f"at step {step}: {exc}") from exc
    except Exception as exc:  # onnxruntime raises its own unrelated exception types
        raise PolicyError(f"at step {step}: inference failed: {one_line(exc)}") from exc
