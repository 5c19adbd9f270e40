"""The per-process side of a run: one policy, one env at a time, episodes turned into report rows.

Each xdist worker (or the single process without ``-n``) owns one :class:`EpisodeRunner`. The env
of a task is kept for that task's following episodes, since building one costs seconds. The
policy is made on first use (``make_policy``) unless the preflight's is handed over, and checked
against the identity the run's report names.
"""

from __future__ import annotations

import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass

from pytest_vla.errors import EnvFailure, ExportError, PolicyError, VlaWarning, one_line
from pytest_vla.export.files import check_unchanged
from pytest_vla.plan import EvalPlan, rendered_cameras
from pytest_vla.policy.base import Policy
from pytest_vla.report.layout import OutputLayout
from pytest_vla.report.reader import policy_difference
from pytest_vla.report.schema import (
    ONNX_EXPORT,
    EpisodeId,
    EpisodeRow,
    TaskSpec,
    TerminalReason,
    episode_row,
    goal_record,
    side_effects,
)
from pytest_vla.rollout import interrupts
from pytest_vla.rollout.loop import EpisodeOutcome, run_episode
from pytest_vla.rollout.recording import save_trajectory
from pytest_vla.rollout.video import VideoRecorder
from pytest_vla.rollout.watchdog import Watchdog
from pytest_vla.suites.base import Observation, Suite, SuiteEnv

ENV_BUILD_ALLOWANCE_S = 600.0  # LIBERO builds an env in 5 to 20 s; a hung GL or BDDL setup never returns


@dataclass(frozen=True)
class PreparedEnv:
    """An env built before the first episode (by the controller, while the preflight finished), for ``task``."""

    task: TaskSpec
    env: SuiteEnv
    build_s: float


class EpisodeRunner:
    def __init__(
        self,
        plan: EvalPlan,
        suite: Suite,
        *,
        worker: str,
        announce: Callable[[str], None],
        make_policy: Callable[[], Policy],
        policy: Policy | None = None,
        prepared: PreparedEnv | None = None,
    ) -> None:
        self.plan = plan
        self.suite = suite
        self.worker = worker  # "gw0", ... under xdist, else "main"
        self._make_policy = make_policy
        self._policy = policy  # made on first use unless the preflight's is handed over
        self._prepared = prepared  # taken by the first episode of its task, if that task comes first
        self._env: SuiteEnv | None = None
        self._env_task: TaskSpec | None = None
        self._watchdog = Watchdog(OutputLayout(plan.output).watchdog_note(worker), announce, plan.run_id)

    def run(self, task: TaskSpec, episode: EpisodeId, attempt: int = 1) -> EpisodeRow:
        """Run one episode (one trial of it) and return its report row; harness problems end up in the row."""
        env_construction_s = 0.0
        recorder: VideoRecorder | None = None
        video_problem: str | None = None
        end_problem: str | None = None
        try:
            # Ctrl-C and SIGTERM wait for a step boundary: the simulator is never torn down mid-call.
            with interrupts.deferred():
                policy = self._load_policy()
                if self._env_task != task:
                    self._watchdog.arm("env_build", f"building the env of {task.key}", ENV_BUILD_ALLOWANCE_S)
                    env_construction_s = self._switch_env(task)
                assert self._env is not None
                policy.begin_episode(self.plan.trial_seed(episode.trial), task, episode.episode_index)
                timeout = self.plan.episode_timeout(task)
                max_steps = self.plan.max_steps(task)
                recorder, video_problem = self._start_video(episode, max_steps)
                self._watchdog.arm("episode", episode.label, timeout)
                watch = _filming(recorder, self.suite)
                outcome = run_episode(self._env, policy, episode.episode_index, max_steps, timeout, watch)
            end_problem = _end_episode(policy, outcome)
        except EnvFailure as exc:
            outcome = EpisodeOutcome(exc.terminal_reason, 0, 0.0, str(exc))
        except ExportError as exc:
            outcome = EpisodeOutcome(TerminalReason.ADAPTER_ERROR, 0, 0.0, str(exc))
        except PolicyError as exc:
            outcome = EpisodeOutcome(TerminalReason.ADAPTER_ERROR, 0, 0.0, f"policy: {exc}")
        except Exception as exc:  # a harness bug must still leave a row behind
            outcome = EpisodeOutcome(TerminalReason.ADAPTER_ERROR, 0, 0.0, f"harness: {one_line(exc)}")
        finally:
            self._watchdog.disarm()
        video, problem = self._finish_video(recorder, outcome)
        problem = "; ".join(filter(None, (problem or video_problem, end_problem)))
        trajectory = None
        if self.plan.save_trajectories:
            try:
                path = save_trajectory(self.plan.output, episode, outcome, self.suite.action_dim, self.suite.state_dim)
                trajectory = str(path)
            except Exception as exc:  # a full disk must not cost the episode's result
                problem = "; ".join(filter(None, (problem, f"trajectory not saved: {one_line(exc)}")))
        goal = goal_record(outcome.goal_at_end, outcome.goal_best, outcome.goal_best_step, outcome.furthest_stages)
        return episode_row(
            episode,
            reason=outcome.terminal_reason,
            instruction=task.instruction,
            max_steps=self.plan.max_steps(task),
            worker=self.worker,
            n_steps=outcome.n_steps,
            wall_clock_s=outcome.wall_clock_s,
            error_message="; ".join(text for text in (outcome.error_message, problem) if text) or None,
            env_construction_s=env_construction_s,
            provider=self._policy.provider if self._policy else None,
            cuda_visible_devices=os.environ.get("CUDA_VISIBLE_DEVICES"),  # this worker's pin, when pinned
            attempt=attempt,
            trajectory_path=trajectory,
            video_path=video,
            goal=goal,
            disturbed=side_effects(goal, outcome.bystander_moves, outcome.bystander_drops),
        )

    def close(self) -> None:
        """Close the policy and the current env; what fails to close is dropped all the same, with a warning."""
        policy, self._policy = self._policy, None
        if policy is not None:
            try:
                policy.close()
            except Exception as exc:
                warnings.warn(VlaWarning(f"closing the policy failed: {one_line(exc)}"), stacklevel=2)
        self._close_env()

    def _close_env(self) -> None:
        """Close the current env, and a prepared one that no episode took."""
        held = [(self._env, self._env_task)]
        if self._prepared is not None:
            held.append((self._prepared.env, self._prepared.task))
        self._env, self._env_task, self._prepared = None, None, None
        for env, task in held:
            if env is None or task is None:
                continue
            try:
                env.close()
            except Exception as exc:
                warnings.warn(VlaWarning(f"closing the env of {task.key} failed: {one_line(exc)}"), stacklevel=2)

    def _load_policy(self) -> Policy:
        if self._policy is None:
            policy = self._make_policy()
            # Hours may have passed since the controller's preflight: what this process evaluates must be
            # what the report names (an export's files, hashed after loading; a server's hello).
            try:
                self._check_identity(policy)
            except BaseException:
                policy.close()
                raise
            self._policy = policy
        return self._policy

    def _check_identity(self, policy: Policy) -> None:
        recorded, now = self.plan.policy_identity, policy.identity()
        if recorded.get("kind") == now.get("kind") == ONNX_EXPORT:
            check_unchanged(recorded["export_files"], now["export_files"])  # names the file that changed
            return
        difference = policy_difference(recorded, now)
        if difference is not None:
            raise PolicyError(f"the policy changed during the run: this process got {difference}")

    def _start_video(self, episode: EpisodeId, max_steps: int) -> tuple[VideoRecorder | None, str | None]:
        if self.plan.video is None:
            return None, None
        try:
            return VideoRecorder(self.plan.output, episode, max_steps + 1, self.suite.control_hz), None
        except Exception as exc:  # no ffmpeg, a full disk: the episode still runs
            return None, f"video not saved: {one_line(exc)}"

    def _finish_video(self, recorder: VideoRecorder | None, outcome: EpisodeOutcome) -> tuple[str | None, str | None]:
        """The video's path when this run keeps it (all, or failures only), else None; and what went wrong."""
        if recorder is None:
            return None, None
        if recorder.frames == 0 or (self.plan.video == "failures" and outcome.success):
            recorder.discard()
            return None, None
        try:
            return str(recorder.keep()), None
        except Exception as exc:
            return None, f"video not saved: {one_line(exc)}"

    def _cameras(self) -> tuple[str, ...]:
        return rendered_cameras(self.plan.cameras, self.suite.video_camera, self.plan.video)

    def _switch_env(self, task: TaskSpec) -> float:
        prepared, self._prepared = self._prepared, None
        if prepared is not None and prepared.task != task:
            self._prepared = prepared  # closed below: this process runs another task first
            prepared = None
        # One env per process at a time: each holds about 2 GiB.
        self._close_env()
        if prepared is not None:
            self._env, self._env_task = prepared.env, task
            return prepared.build_s
        started = time.perf_counter()
        self._env = self.suite.make_env(task, self._cameras(), self.plan.seed, self.plan.state)
        self._env_task = task
        return time.perf_counter() - started


def _end_episode(policy: Policy, outcome: EpisodeOutcome) -> str | None:
    """Tell the policy the episode ended; a failure to tell it costs nothing of the finished result."""
    try:
        policy.end_episode(outcome.success, outcome.n_steps)
    except Exception as exc:  # a server gone after the last step, a plugin's bug
        return f"policy: ending the episode failed: {one_line(exc)}"
    return None


def _filming(recorder: VideoRecorder | None, suite: Suite) -> Callable[[Observation], None] | None:
    if recorder is None:
        return None
    return lambda observation: recorder.frame(observation.images[suite.video_camera])
