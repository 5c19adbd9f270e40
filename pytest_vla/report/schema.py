"""The report's vocabulary: an episode's identity, its terminal reason, and its row.

Each is defined once here; item names, node ids, row keys, trajectory file names and the
report's ``missing_episodes`` entries are all derived from :class:`EpisodeId`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, TypedDict


def task_key(family: str, task_index: int) -> str:
    """A task's name in ids, messages and ``--vla-tasks``: ``libero_object:3``."""
    return f"{family}:{task_index}"


TRIAL_SEPARATOR = "-trial"  # ep2-trial1: episode 2's second trial
MAX_REPEAT = 100  # trials of one episode (--vla-repeat); the report's schemas bound them too


def is_number(text: str) -> bool:
    """A task, episode or shard number as ids and options write it: ASCII digits only.

    ``"²".isdigit()`` is true and ``int("²")`` raises; ``int("٣")`` reads 3.
    """
    return text.isascii() and text.isdecimal()


def task_nodeid(suite: str, key: str) -> str:
    """A task collector's node id, ``libero/libero_object:3``.

    xdist's ``loadfile`` groups by what precedes the first ``::`` and ``loadscope`` by what precedes
    the last one: with the task in both places, either mode keeps a task (the env-reuse unit) on one
    worker. JUnit reads it as the class ``libero.libero_object:3``.
    """
    return f"{suite}/{key}"


@dataclass(frozen=True, order=True)
class EpisodeId:
    """(family, task index, episode index, trial): what identifies an episode across runs, workers and reports.

    The episode index is the init state; ``trial`` counts the repeats of it (``--vla-repeat``), 0 for
    the first, which is the episode an unrepeated run has: its ids and files read as they always did.
    """

    family: str
    task_index: int
    episode_index: int
    trial: int = 0

    @property
    def task_key(self) -> str:
        return task_key(self.family, self.task_index)

    @property
    def init_state(self) -> tuple[str, int, int]:
        """(family, task index, episode index): what an episode's trials share, making their outcomes correlated."""
        return self.family, self.task_index, self.episode_index

    @property
    def label(self) -> str:
        """The episode in messages: ``libero_object:3 episode 2``, ``... episode 2 trial 1`` for a repeat."""
        return f"{self.task_key} episode {self.episode_index}" + (f" trial {self.trial}" if self.trial else "")

    @property
    def item_name(self) -> str:
        """The episode item's name under its task's collector: ``ep2``, and ``ep2-trial1`` for a repeat."""
        return f"ep{self.episode_index}" + (f"{TRIAL_SEPARATOR}{self.trial}" if self.trial else "")

    def nodeid(self, suite: str) -> str:
        """``libero/libero_object:3::ep2``: the episode item under its task's collector."""
        return f"{task_nodeid(suite, self.task_key)}::{self.item_name}"

    @classmethod
    def from_nodeid(cls, suite: str, nodeid: str) -> EpisodeId | None:
        """The episode a node id names, ``None`` for any other test."""
        task, _, name = nodeid.partition("::")
        in_suite, _, key = task.partition("/")
        family, _, index = key.rpartition(":")
        episode, separator, trial = name.removeprefix("ep").partition(TRIAL_SEPARATOR)
        if not (in_suite == suite and family and is_number(index) and name.startswith("ep") and is_number(episode)):
            return None
        if separator and not (is_number(trial) and int(trial) > 0):
            return None
        return cls(family, int(index), int(episode), int(trial) if separator else 0)

    @property
    def file_stem(self) -> str:
        """Per-episode artefacts: ``libero_object_task3_episode_2``, ``..._episode_2_trial_1`` for a repeat."""
        stem = f"{self.family}_task{self.task_index}_episode_{self.episode_index}"
        return stem + (f"_trial_{self.trial}" if self.trial else "")

    @classmethod
    def of_row(cls, row: EpisodeRow | dict[str, Any]) -> EpisodeId:
        """A row's episode; a row from before repeated trials is its episode's first trial."""
        return cls(row["task_id"], row["task_index"], row["episode_index"], row.get("trial", 0))

    def to_json(self) -> dict[str, Any]:
        return {
            "task_id": self.family,
            "task_index": self.task_index,
            "episode_index": self.episode_index,
            "trial": self.trial,
        }


@dataclass(frozen=True)
class TaskSpec:
    """One task of a suite: the unit that owns an environment and a step budget."""

    family: str
    index: int
    instruction: str
    max_steps: int
    clean_task: str | None = None  # a perturbed task's clean counterpart (its task key), which it pairs with
    name: str | None = None  # the suite's own name for the task (push-v3), which -k matches

    @property
    def key(self) -> str:
        return task_key(self.family, self.index)

    def episode(self, episode_index: int, trial: int = 0) -> EpisodeId:
        return EpisodeId(self.family, self.index, episode_index, trial)


# The kinds of policy report.json's ``env.policy`` names (its ``kind``); a plugin's policy names its own.
ONNX_EXPORT = "onnx-export"
SERVED_POLICY = "served"


class TerminalReason(str, Enum):
    """Why an episode ended (report schema v1 enum)."""

    SUCCESS = "success"
    TIMEOUT = "timeout"  # out of steps or out of wall-clock time: a policy failure
    ENV_BUILD_FAILURE = "bddl_failure"  # the env could not be built (v1 names it after LIBERO's BDDL scenes)
    RENDERING_FAILURE = "rendering_failure"
    ADAPTER_ERROR = "adapter_error"  # the policy's output, the harness, or a worker that died

    @property
    def is_harness_error(self) -> bool:
        """The episode was not measured: it says nothing about the policy, and it fails the run apart."""
        return self not in (TerminalReason.SUCCESS, TerminalReason.TIMEOUT)


class Stage(str, Enum):
    """How far an episode got with one object its goal acts on, in order: each stage implies those before."""

    UNTOUCHED = "untouched"
    TOUCHED = "touched"  # the gripper touched it
    GRASPED = "grasped"  # both fingers on it at once (robosuite's grasp check)
    # A jointed object (a door, drawer, knob, switch) moved a quarter of the way toward its goal
    # state; a free object is lifted instead: the two are the same step for either kind of object.
    MOVED = "moved"
    LIFTED = "lifted"  # more than 2 cm above where the reset left it
    AT_GOAL = "at_goal"  # a goal condition naming it held

    @property
    def rank(self) -> int:
        return STAGE_ORDER.index(self.value)


# The stages' values in order: the summary's and report.html's order of the groups.
STAGE_ORDER = tuple(stage.value for stage in Stage)
# How far above where the reset left it an object must be to count as lifted.
LIFTED_M = 0.02
# How much of the way from where the reset left it to its goal state a jointed object must go to count as moved.
MOVED_SHARE = 0.25


class GoalRecord(TypedDict):
    """How much of the task's goal an episode achieved: its conditions by name, as the suite writes them."""

    conditions: list[str]
    satisfied_at_end: list[str]
    most_satisfied: list[str]  # the first time the most of them held at once
    most_satisfied_step: int  # policy steps taken then (0: right after the reset)
    furthest_stages: dict[str, str]  # each object the goal acts on -> the furthest Stage it reached


def goal_record(
    at_end: Mapping[str, bool] | None,
    best: Mapping[str, bool] | None,
    best_step: int,
    furthest_stages: Mapping[str, Stage],
) -> GoalRecord | None:
    """The row's ``goal``; None where the suite reports no goal conditions or the episode never reset."""
    if at_end is None or best is None:
        return None
    return {
        "conditions": list(at_end),
        "satisfied_at_end": [name for name, held in at_end.items() if held],
        "most_satisfied": [name for name, held in best.items() if held],
        "most_satisfied_step": best_step,
        "furthest_stages": {name: stage.value for name, stage in furthest_stages.items()},
    }


# An object the goal does not name counts as disturbed past this distance from where the reset
# left it, and as off the table (fallen) this far below it.
DISTURBED_M = 0.05
FELL_M = 0.10


class SideEffect(TypedDict):
    object: str
    moved_m: float  # the furthest it got from where the reset left it
    fell: bool  # it went more than FELL_M below where the reset left it: off its table or shelf


def side_effects(
    goal: GoalRecord | None, moves: Mapping[str, float] | None, drops: Mapping[str, float] | None
) -> list[SideEffect] | None:
    """The row's ``side_effects``: what the episode disturbed of the objects its goal does not name.

    None where there is no goal, or the suite does not tell what else moved (``moves`` None).
    """
    if goal is None or moves is None or drops is None:
        return None
    return [
        {"object": name, "moved_m": round(moved, 4), "fell": drops.get(name, 0.0) < -FELL_M}
        for name, moved in moves.items()
        if moved > DISTURBED_M
    ]


def episode_stage(goal: GoalRecord | None) -> str | None:
    """The row's ``stage``: where the episode stopped getting further, the least advanced object's furthest stage."""
    if goal is None or not goal["furthest_stages"]:
        return None
    return min((Stage(value) for value in goal["furthest_stages"].values()), key=lambda stage: stage.rank).value


def goal_progress(goal: GoalRecord | None) -> float | None:
    """The row's ``progress``: the largest share of the goal's conditions that held at once (1.0 on success)."""
    if goal is None or not goal["conditions"]:
        return None
    return round(len(goal["most_satisfied"]) / len(goal["conditions"]), 6)


class EpisodeRow(TypedDict):
    """One ``episodes[]`` entry of report.json: schema v1 fields first, then pytest-vla's."""

    task_id: str  # the family (v1 calls it the task)
    episode_index: int  # the init state
    success: bool
    terminal_reason: str  # a TerminalReason value
    wall_clock_s: float
    n_steps: int
    video_path: str | None
    error_message: str | None
    task_index: int
    trial: int  # the repeat of this init state, 0..K-1 under --vla-repeat K
    instruction: str
    max_steps: int
    worker: str
    env_construction_s: float
    provider: str | None
    cuda_visible_devices: str | None  # the worker's GPU pin; None where it was not pinned
    attempt: int
    trajectory_path: str | None
    progress: float | None  # goal_progress(goal)
    stage: str | None  # episode_stage(goal)
    goal: GoalRecord | None
    side_effects: list[SideEffect] | None


def episode_row(
    episode: EpisodeId,
    *,
    reason: TerminalReason,
    instruction: str,
    max_steps: int,
    worker: str,
    n_steps: int = 0,
    wall_clock_s: float = 0.0,
    error_message: str | None = None,
    env_construction_s: float = 0.0,
    provider: str | None = None,
    cuda_visible_devices: str | None = None,
    attempt: int = 1,
    trajectory_path: str | None = None,
    video_path: str | None = None,
    goal: GoalRecord | None = None,
    disturbed: list[SideEffect] | None = None,
) -> EpisodeRow:
    """The only place a row is made, whether its episode ran, failed to run, or died with its worker."""
    return {
        "task_id": episode.family,
        "episode_index": episode.episode_index,
        "success": reason is TerminalReason.SUCCESS,
        "terminal_reason": reason.value,
        "wall_clock_s": round(wall_clock_s, 4),
        "n_steps": n_steps,
        "video_path": video_path,
        "error_message": error_message,
        "task_index": episode.task_index,
        "trial": episode.trial,
        "instruction": instruction,
        "max_steps": max_steps,
        "worker": worker,
        "env_construction_s": round(env_construction_s, 4),
        "provider": provider,
        "cuda_visible_devices": cuda_visible_devices,
        "attempt": attempt,
        "trajectory_path": trajectory_path,
        "progress": goal_progress(goal),
        "stage": episode_stage(goal),
        "goal": goal,
        "side_effects": disturbed,
    }


def describe_failure(row: EpisodeRow | dict[str, Any]) -> str:
    """The one-line reason shown for a failed or errored episode."""
    if row["terminal_reason"] == TerminalReason.TIMEOUT and row["error_message"]:
        return str(row["error_message"])
    if row["terminal_reason"] == TerminalReason.TIMEOUT:
        return f"not done after {row['n_steps']} policy steps (step budget {row['max_steps']})"
    return f"{row['terminal_reason']}: {row['error_message']}"


def success_rate(rows: list[EpisodeRow] | list[dict[str, Any]]) -> float:
    return sum(1 for row in rows if row["success"]) / len(rows) if rows else 0.0
