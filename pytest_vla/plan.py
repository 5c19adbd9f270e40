"""What one run evaluates, decided once on the controller and shipped to every xdist worker.

Workers never re-decide: they collect exactly the plan's items, so every worker's collection is
identical (xdist's collection invariant) and the controller's checks hold for all of them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_vla.policy.choice import PolicyChoice
from pytest_vla.preflight.result import PreflightResult
from pytest_vla.report.schema import EpisodeId, TaskSpec
from pytest_vla.report.shards import Shard, run_episodes
from pytest_vla.suites.base import StateConvention


def rendered_cameras(bound: tuple[str, ...], video_camera: str, video: str | None) -> tuple[str, ...]:
    """The policy's cameras, and the video's when recording: rendered for the video only, never fed."""
    if video is not None and video_camera not in bound:
        return (*bound, video_camera)
    return bound


@dataclass(frozen=True)
class EvalPlan:
    suite: str
    policy: PolicyChoice
    output: Path
    tasks: tuple[TaskSpec, ...]
    num_episodes: int  # init states per task
    seed: int
    max_steps_override: int | None
    save_trajectories: bool
    episode_timeout_override: float | None
    cameras: tuple[str, ...]  # the cameras the policy reads: the only ones rendered
    state: StateConvention  # the state the policy reads
    provider: str  # where the controller's policy runs (an onnxruntime execution provider, a server)
    collect_paths: bool  # also collect the test paths the user named; without any, episodes only
    policy_identity: dict[str, Any]  # what report.json records; each worker checks its own policy's
    video: str | None = None  # --vla-video: "all", "failures", or None for no video
    shard: Shard | None = None  # this job's share of the run (--vla-shard); None: all of it
    finished: tuple[EpisodeId, ...] = ()  # episodes an earlier report already holds (--vla-resume, --lf)
    preflight: PreflightResult | None = None  # the controller's simulator preflight, for the vla_preflight fixture
    repeat: int = 1  # trials of each init state (--vla-repeat)
    run_id: str = ""  # set by the controller: what the watchdog's notes carry, so none of another run is taken

    def episodes(self) -> list[EpisodeId]:
        """The episodes this job runs: its shard's share of the run, in run order."""
        everything = run_episodes(self.tasks, self.num_episodes, self.repeat)
        return everything if self.shard is None else self.shard.share(everything)

    def trial_seed(self, trial: int) -> int:
        """What a trial's policy draws its randomness from: seed + trial (the env's init state keeps ``seed``)."""
        return self.seed + trial

    def max_steps(self, task: TaskSpec) -> int:
        return self.max_steps_override or task.max_steps

    def episode_timeout(self, task: TaskSpec) -> float:
        """Wall-clock seconds from the reset: generous by default (rendering both cameras costs ~0.25 s a step)."""
        return self.episode_timeout_override or 120.0 + 2.0 * self.max_steps(task)

    @property
    def families(self) -> list[str]:
        return list(dict.fromkeys(task.family for task in self.tasks))

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["policy"], data["output"], data["state"] = self.policy.to_json(), str(self.output), self.state.to_json()
        data["shard"] = self.shard.to_json() if self.shard else None
        data["preflight"] = self.preflight.to_json() if self.preflight else None
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> EvalPlan:
        fields = dict(data)
        fields["policy"], fields["output"] = PolicyChoice.from_json(data["policy"]), Path(data["output"])
        fields["tasks"] = tuple(TaskSpec(**task) for task in data["tasks"])
        fields["cameras"] = tuple(data["cameras"])
        fields["state"] = StateConvention.of(data["state"])
        fields["finished"] = tuple(EpisodeId(**episode) for episode in data["finished"])
        fields["shard"] = Shard.from_json(data["shard"]) if data["shard"] else None
        fields["preflight"] = PreflightResult.from_json(data["preflight"]) if data["preflight"] else None
        return cls(**fields)
