"""A shard: the share of a run's episodes that one job runs (``--vla-shard K/N``).

Every shard computes the same partition of the same plan, so the shards never overlap and never
miss an episode, and a merge can name the episodes of a shard that never reported.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

from pytest_vla.report.schema import EpisodeId, TaskSpec, is_number


def run_episodes(tasks: Sequence[TaskSpec], num_episodes: int, repeat: int) -> list[EpisodeId]:
    """Every episode of a run, all shards together, in run order: a task's episodes together, an episode's trials."""
    return [task.episode(index, trial) for task in tasks for index in range(num_episodes) for trial in range(repeat)]


@dataclass(frozen=True)
class Shard:
    index: int  # 0..count-1
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        """``K/N`` with ``0 <= K < N``; raises :class:`ValueError` with a message for the user."""
        index, slash, count = text.strip().partition("/")
        if not (slash and is_number(index) and is_number(count)):
            raise ValueError(f"must be K/N (shard K of N, counted from 0), got {text!r}")
        shard = cls(int(index), int(count))
        if not 0 <= shard.index < shard.count:
            raise ValueError(f"must be K/N with 0 <= K < N, got {text!r}")
        return shard

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def share(self, episodes: Sequence[EpisodeId]) -> list[EpisodeId]:
        """This shard's episodes of ``episodes`` (a run's, in run order: a task's episodes together)."""
        cuts = _cuts(tuple(_task_boundaries(episodes)), len(episodes), self.count)
        return list(episodes[cuts[self.index] : cuts[self.index + 1]])

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "count": self.count}

    @classmethod
    def from_json(cls, data: dict[str, int]) -> Shard:
        """What :meth:`to_json` wrote (a loaded report's ``shard`` is checked to be that)."""
        return cls(data["index"], data["count"])


def _task_boundaries(episodes: Sequence[EpisodeId]) -> list[bool]:
    """For each position 0..len: whether a cut there would leave every task whole."""
    keys = [episode.task_key for episode in episodes]
    return [True] + [keys[position - 1] != keys[position] for position in range(1, len(keys))] + [True]


@cache
def _cuts(boundaries: tuple[bool, ...], total: int, count: int) -> list[int]:
    """Where each shard starts (and the last ends): contiguous slices as equal as can be.

    Sizes differ by at most one episode, so no shard waits on another. Which shards get the
    remainder's extra episode is free: it is chosen to put as many cuts as possible between two
    tasks, since a task split over two shards costs a second env build (seconds each).
    """
    base, extra = divmod(total, count)

    # best[i][j]: most whole-task cuts among cuts i..count-1 when shards 0..i-1 took j extra episodes.
    best: list[dict[int, int]] = [{} for _ in range(count + 1)]
    best[count][extra] = 0
    for i in range(count - 1, -1, -1):
        for j in range(max(0, extra - (count - i)), min(i, extra) + 1):
            here = int(boundaries[i * base + j]) if i > 0 else 0
            best[i][j] = here + max(best[i + 1][k] for k in (j, j + 1) if k in best[i + 1])
    cuts, used = [0], 0
    for i in range(1, count + 1):
        # Ties go to the larger shard first: deterministic, and the same on every shard.
        used = max((k for k in (used + 1, used) if k in best[i]), key=lambda k: best[i][k])
        cuts.append(i * base + used)
    return cuts
