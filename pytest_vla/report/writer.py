"""``<output>/report.json``: the schema v1 envelope (``reflex eval``'s), plus additive detail.

The controller owns the report: every worker's rows reach it through pytest's report stream. The
file is replaced atomically, so it is valid at any moment: when the run starts (listing what it will
run), at most every REWRITE_EVERY_S seconds while episodes finish, and at the end. Each finished
row goes to the journal (``report/journal.py``) at once, so a run's cost per episode stays flat.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_vla import __version__
from pytest_vla.report.environment import machine, package_version, utc_now
from pytest_vla.report.layout import OutputLayout
from pytest_vla.report.schema import EpisodeId, EpisodeRow, TaskSpec, success_rate
from pytest_vla.report.shards import Shard
from pytest_vla.report.stats import clustered_interval, mean_interval, pass_at_k, pass_hat_k

SCHEMA_VERSION = 1
REWRITE_EVERY_S = 5.0  # a rewrite costs O(rows): thousands of rows, one every few seconds, not one per episode
_HARNESS_PACKAGES = ("pytest", "pytest-xdist", "onnxruntime", "onnxruntime-gpu")


@dataclass(frozen=True)
class Invocation:
    """How the run was started: enough to start a missing shard the same way."""

    args: list[str]  # pytest's arguments, as given
    cwd: str

    def to_json(self) -> dict[str, Any]:
        return {"args": self.args, "cwd": self.cwd}


@dataclass(frozen=True)
class RunInfo:
    """What a report says about its run besides the rows: decided before the first episode."""

    suite: str
    seed: int
    tasks: tuple[TaskSpec, ...]
    num_episodes: int  # init states per task
    repeat: int  # trials of each init state (--vla-repeat)
    protocol: dict[str, Any]  # the suite's protocol and the run's settings that change outcomes
    provider: str
    workers: int
    policy: dict[str, Any]  # the policy's identity (Policy.identity): an export's digests, a server's hello
    shard: Shard | None
    invocation: Invocation | None  # None for a merged report: no one command made it

    @property
    def families(self) -> list[str]:
        return list(dict.fromkeys(task.family for task in self.tasks))


class ReportWriter:
    """The rows of one run, kept by episode, and the report.json built from them."""

    def __init__(self, info: RunInfo, output: Path) -> None:
        self.info = info
        self.path = OutputLayout(output).report_json
        self._started_at = utc_now()
        self._started = time.monotonic()
        self._written: float | None = None  # when report.json was last replaced
        self._rows: dict[EpisodeId, EpisodeRow] = {}
        self._expected: list[EpisodeId] = []  # the selected episodes, in run order
        self.preflight: dict[str, Any] | None = None  # the simulator preflight's result
        self.cost: dict[str, Any] | None = None  # the estimate from the preflight's timings
        self.comparison: dict[str, Any] | None = None  # against --vla-baseline, at the end of the run
        self._environment = {
            **machine(),
            "export_dir": info.policy.get("export_dir"),
            "onnx_files": [entry for entry in export_files(info.policy) if entry["name"].endswith(".onnx")],
            "export_files": export_files(info.policy),
            "policy": info.policy,
            "versions": {name: version for name in _HARNESS_PACKAGES if (version := package_version(name))},
        }

    def expect(self, episodes: list[EpisodeId]) -> None:
        """The episodes this run selected; those without a row are listed as missing."""
        self._expected = episodes

    @property
    def rows(self) -> list[EpisodeRow]:
        return list(self._rows.values())

    @property
    def missing(self) -> list[EpisodeId]:
        return [episode for episode in self._expected if episode not in self._rows]

    def add(self, row: EpisodeRow) -> None:
        """Record an episode's row; a later attempt of the same episode replaces the earlier one."""
        self._rows[EpisodeId.of_row(row)] = row

    def write(self, modify: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
        """Build the report, let ``modify`` add keys to it, replace report.json atomically, and return it."""
        report = self.build()
        if modify is not None:
            modify(report)
        write_json_atomically(self.path, report)
        self._written = time.monotonic()
        return report

    def write_if_due(self, modify: Callable[[dict[str, Any]], None] | None = None) -> bool:
        """:meth:`write` when REWRITE_EVERY_S have passed since the last write; whether it wrote."""
        if self._written is not None and time.monotonic() - self._written < REWRITE_EVERY_S:
            return False
        self.write(modify)
        return True

    def build(self) -> dict[str, Any]:
        info = self.info
        order = {task.key: position for position, task in enumerate(info.tasks)}

        def run_order(row: EpisodeRow) -> tuple[int, int, int]:
            episode = EpisodeId.of_row(row)
            return order.get(episode.task_key, len(order)), episode.episode_index, episode.trial

        episodes = sorted(self._rows.values(), key=run_order)
        families = info.families
        missing = self.missing
        # Grouped in one pass: a run of thousands of episodes rebuilds the report every few seconds.
        by_family: dict[str, list[EpisodeRow]] = {}
        by_task: dict[str, list[EpisodeRow]] = {}
        for row in episodes:
            by_family.setdefault(row["task_id"], []).append(row)
            by_task.setdefault(EpisodeId.of_row(row).task_key, []).append(row)
        return {
            "schema_version": SCHEMA_VERSION,
            "reflex_version": None,
            "harness": "pytest-vla",
            "harness_version": __version__,
            "suite": info.suite,
            "runtime": "local",
            "seed": info.seed,
            "started_at": self._started_at,
            "finished_at": utc_now(),
            "wall_clock_s": round(time.monotonic() - self._started, 3),
            "tasks": families,
            "num_episodes_per_task": info.num_episodes,
            "repeat": info.repeat,
            "aggregate": tally(episodes),
            "results": [{"task_id": family, **tally(by_family.get(family, []))} for family in families],
            "task_results": [
                {
                    "task_id": task.family,
                    "task_index": task.index,
                    "instruction": task.instruction,
                    "max_steps": task.max_steps,
                    "clean_task": task.clean_task,
                    **tally(by_task.get(task.key, [])),
                }
                for task in info.tasks
            ],
            "episodes": episodes,
            "cost": self.cost
            or {"total_usd": 0.0, "by_task": dict.fromkeys(families, 0.0), "cost_table_schema_version": 1},
            "modal": None,
            "env": self._environment,
            "execution_provider": info.provider,
            "workers": info.workers,
            "protocol": info.protocol,
            "video_paths": [row["video_path"] for row in episodes if row["video_path"]],
            "notes": None,
            # Until every selected episode has a row (a run in progress, interrupted or killed).
            "partial": bool(missing),
            "missing_episodes": [episode.to_json() for episode in missing],
            "shard": info.shard.to_json() if info.shard else None,
            "invocation": info.invocation.to_json() if info.invocation else None,
            "preflight": self.preflight,
            "comparison": self.comparison,
        }


def tally(rows: list[EpisodeRow]) -> dict[str, Any]:
    n_success = sum(1 for row in rows if row["success"])
    # Repeated trials of one init state are correlated: the intervals and pass@k count init states.
    init_states = by_init_state(rows)
    clusters = [(sum(1 for row in trials if row["success"]), len(trials)) for trials in init_states]
    pooled = clustered_interval(clusters)
    most_trials = max((trials for _, trials in clusters), default=0)
    # Rows of a suite that reports no goal conditions, or of an earlier report, have no progress.
    progress_clusters = [
        values for trials in init_states if (values := [row["progress"] for row in trials if _has_progress(row)])
    ]
    progress = [value for values in progress_clusters for value in values]
    progress_interval = mean_interval(progress_clusters)
    watched = [row for row in rows if row.get("side_effects") is not None]
    return {
        "success_rate": round(success_rate(rows), 6),
        "n_success": n_success,
        "n_total": len(rows),
        # The 95% Wilson interval of the rate, [low, high], at the effective number of trials (init states
        # count as clusters of repeated trials); null before any episode of it finished.
        "ci95": [round(bound, 6) for bound in pooled[:2]] if pooled else None,
        "n_init_states": len(clusters),
        "n_effective": round(pooled[2], 3) if pooled else 0.0,
        # Of an init state's trials (--vla-repeat K): at least one of k succeeds, all k do; null unrepeated.
        "pass_at_k": _by_k(pass_at_k, clusters, most_trials),
        "pass_hat_k": _by_k(pass_hat_k, clusters, most_trials),
        "mean_progress": round(math.fsum(progress) / len(progress), 6) if progress else None,
        "n_progress": len(progress),
        "progress_ci95": [round(bound, 6) for bound in progress_interval] if progress_interval else None,
        # Episodes that disturbed an object their goal does not name, of those whose suite tells.
        "n_side_effects": sum(1 for row in watched if row["side_effects"]),
        "n_watched": len(watched),
    }


def _has_progress(row: EpisodeRow) -> bool:
    return row.get("progress") is not None


def by_init_state(rows: list[EpisodeRow]) -> list[list[EpisodeRow]]:
    """``rows`` grouped by init state (task, episode): the clusters repeated trials form."""
    groups: dict[tuple[str, int, int], list[EpisodeRow]] = {}
    for row in rows:
        groups.setdefault(EpisodeId.of_row(row).init_state, []).append(row)
    return list(groups.values())


def reported_ks(most_trials: int) -> list[int]:
    """The k of pass@k and pass^k a tally gives: 1..10, and the most trials any init state had."""
    return sorted({*range(1, min(most_trials, 10) + 1), most_trials})


def _by_k(
    estimate: Callable[[list[tuple[int, int]], int], float | None], clusters: list[tuple[int, int]], most_trials: int
) -> dict[str, float] | None:
    if most_trials < 2:
        return None
    return {str(k): round(value, 6) for k in reported_ks(most_trials) if (value := estimate(clusters, k)) is not None}


def write_json_atomically(path: Path, data: dict[str, Any]) -> None:
    """``data`` as indented JSON, written as :func:`write_text_atomically` writes."""
    write_text_atomically(path, json.dumps(data, indent=2) + "\n")


def write_text_atomically(path: Path, text: str) -> None:
    """Write to a temporary file beside ``path``, flush it to disk and rename it over: never half a file.

    The file gets the mode a plain ``open()`` would give (0644 under the usual umask), so artifact
    uploaders running as other users can read it; ``mkstemp`` alone would leave it 0600.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fchmod(stream.fileno(), 0o666 & ~_umask())
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def export_files(policy: dict[str, Any]) -> list[dict[str, Any]]:
    """The files an export's identity names; none for a policy of another kind (a server's, a plugin's)."""
    files = policy.get("export_files")
    return files if isinstance(files, list) else []
