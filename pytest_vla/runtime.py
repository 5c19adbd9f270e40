"""The per-process side of a run: one policy, one env at a time, episodes turned into report rows.

Each xdist worker (or the single process without ``-n``) owns one :class:`EpisodeRunner`. The env
of a task is kept for that task's following episodes, since building one costs seconds.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from pytest_vla import interrupts
from pytest_vla.episode import ADAPTER_ERROR, TIMEOUT, EpisodeOutcome, run_episode
from pytest_vla.errors import one_line
from pytest_vla.export import ExportError, load_manifest
from pytest_vla.plan import EvalPlan
from pytest_vla.policy import OnnxPolicy
from pytest_vla.suites.base import EnvFailure, Suite, SuiteEnv, TaskSpec
from pytest_vla.watchdog import WATCHDOG_EXIT, Watchdog

ENV_BUILD_ALLOWANCE_S = 600.0  # LIBERO builds an env in 5 to 20 s; a hung GL or BDDL setup never returns


class EpisodeRunner:
    def __init__(
        self, plan: EvalPlan, suite: Suite, *, worker: str, workers: int, policy: OnnxPolicy | None = None
    ) -> None:
        self.plan = plan
        self.suite = suite
        self.worker = worker  # "gw0", ... under xdist, else "main"
        self.workers = workers
        self._policy = policy  # loaded on first use unless the preflight's is handed over
        self._env: SuiteEnv | None = None
        self._env_task: TaskSpec | None = None
        self._watchdog = Watchdog()

    def run(self, task: TaskSpec, episode_index: int) -> dict[str, Any]:
        """Run one episode and return its report row; harness problems end up in the row, not raised."""
        env_construction_s = 0.0
        try:
            # Ctrl-C and SIGTERM wait for a step boundary: the simulator is never torn down mid-call.
            with interrupts.deferred():
                policy = self._load_policy()
                if self._env_task != task:
                    self._watchdog.arm(ENV_BUILD_ALLOWANCE_S, f"building the env of {task.key}")
                    env_construction_s = self._switch_env(task)
                assert self._env is not None
                policy.begin_episode(self.plan.seed, task, episode_index)
                timeout = self.plan.episode_timeout(task)
                self._watchdog.arm(timeout, f"{task.key} episode {episode_index}")
                outcome = run_episode(self._env, policy, episode_index, self.plan.max_steps(task), timeout)
        except EnvFailure as exc:
            outcome = EpisodeOutcome(exc.terminal_reason, 0, 0.0, str(exc))
        except ExportError as exc:
            outcome = EpisodeOutcome(ADAPTER_ERROR, 0, 0.0, str(exc))
        except Exception as exc:  # a harness bug must still leave a row behind
            outcome = EpisodeOutcome(ADAPTER_ERROR, 0, 0.0, f"harness: {one_line(exc)}")
        finally:
            self._watchdog.disarm()
        row = self._row(task, episode_index, outcome, env_construction_s)
        if self.plan.save_trajectories:
            row["trajectory_path"] = self._save_trajectory(task, episode_index, outcome)
        return row

    def close(self) -> None:
        if self._env is not None:
            self._env.close()
            self._env, self._env_task = None, None

    def _load_policy(self) -> OnnxPolicy:
        if self._policy is None:
            # Several workers share the cores: one inference thread each keeps them from thrashing.
            self._policy = OnnxPolicy(
                load_manifest(self.plan.export),
                intra_op_threads=1 if self.workers > 1 else 0,
            )
        return self._policy

    def _switch_env(self, task: TaskSpec) -> float:
        # One env per process at a time: each holds about 2 GiB.
        self.close()
        started = time.perf_counter()
        self._env = self.suite.make_env(
            task, self.plan.cameras, self.plan.seed, self._load_policy().manifest.state_convention
        )
        self._env_task = task
        return time.perf_counter() - started

    def _row(
        self, task: TaskSpec, episode_index: int, outcome: EpisodeOutcome, env_construction_s: float
    ) -> dict[str, Any]:
        provider = self._policy.provider if self._policy else None
        return episode_row(self.plan, task, episode_index, outcome, self.worker, env_construction_s, provider)

    def _save_trajectory(self, task: TaskSpec, episode_index: int, outcome: EpisodeOutcome) -> str:
        directory = self.plan.output / "trajectories"
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{task.family}_task{task.index}_episode_{episode_index}.npz"
        actions = np.asarray(outcome.actions, dtype=np.float64).reshape(-1, self.suite.action_dim)
        states = np.asarray(outcome.states, dtype=np.float64).reshape(-1, self.suite.state_dim)
        np.savez(path, actions=actions, states=states)
        return str(path)


def episode_row(
    plan: EvalPlan,
    task: TaskSpec,
    episode_index: int,
    outcome: EpisodeOutcome,
    worker: str,
    env_construction_s: float = 0.0,
    provider: str | None = None,
) -> dict[str, Any]:
    """An episode's report row (schema v1 fields first, then pytest-vla's)."""
    return {
        "task_id": task.family,
        "episode_index": episode_index,
        "success": outcome.success,
        "terminal_reason": outcome.terminal_reason,
        "wall_clock_s": round(outcome.wall_clock_s, 4),
        "n_steps": outcome.n_steps,
        "video_path": None,
        "error_message": outcome.error_message,
        "task_index": task.index,
        "instruction": task.instruction,
        "max_steps": plan.max_steps(task),
        "worker": worker,
        "env_construction_s": round(env_construction_s, 4),
        "provider": provider,
        "gpu": os.environ.get("CUDA_VISIBLE_DEVICES"),  # the worker's pinned device, when pinned
    }


def crashed_worker_row(
    plan: EvalPlan, key: tuple[str, int, int], worker: str, how: str, exit_code: int | None
) -> dict[str, Any]:
    """The row of an episode whose worker process died under it (segfault, OOM kill, watchdog)."""
    family, index, episode_index = key
    task = next(task for task in plan.tasks if (task.family, task.index) == (family, index))
    if exit_code == WATCHDOG_EXIT:
        outcome = EpisodeOutcome(
            TIMEOUT,
            0,
            0.0,
            f"wall-clock timeout: stuck past {plan.episode_timeout(task):g} s inside the simulator or the model; "
            f"the watchdog ended worker {worker} and xdist replaced it",
        )
    else:
        message = f"worker {worker} died while running this episode ({how}); xdist replaced it"
        outcome = EpisodeOutcome(ADAPTER_ERROR, 0, 0.0, message)
    return episode_row(plan, task, episode_index, outcome, worker)


def describe_failure(row: dict[str, Any]) -> str:
    """The one-line reason shown for a failed or errored episode."""
    if row["terminal_reason"] == "timeout" and row["error_message"]:
        return row["error_message"]
    if row["terminal_reason"] == "timeout":
        return f"not done after {row['n_steps']} policy steps (step budget {row['max_steps']})"
    return f"{row['terminal_reason']}: {row['error_message']}"
