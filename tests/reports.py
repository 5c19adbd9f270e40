"""Reports as the writer writes them, from the few keys a test cares about."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pytest_vla.report.schema import TaskSpec, TerminalReason, episode_row, task_key
from pytest_vla.report.writer import ReportWriter, RunInfo


def written(minimal: dict[str, Any]) -> dict[str, Any]:
    """The whole report.json of ``minimal`` (suite, seed, protocol, task_results, episodes), tallies and all.

    An episode may name its ``trial``: the report's repeat is then the most trials any episode has.
    """
    tasks = tuple(
        TaskSpec(task["task_id"], task["task_index"], task["instruction"], task["max_steps"], task.get("clean_task"))
        for task in minimal["task_results"]
    )
    episodes = minimal["episodes"]
    info = RunInfo(
        suite=minimal["suite"],
        seed=minimal["seed"],
        tasks=tasks,
        num_episodes=1 + max((row["episode_index"] for row in episodes), default=-1),
        repeat=1 + max((row.get("trial", 0) for row in episodes), default=0),
        protocol=minimal["protocol"],
        provider="CPUExecutionProvider",
        workers=1,
        policy={"kind": "onnx-export", "export_dir": "export", "export_files": []},
        shard=None,
        invocation=None,
    )
    writer = ReportWriter(info, Path("unwritten"))
    by_key = {task.key: task for task in tasks}
    for row in episodes:
        task = by_key[task_key(row["task_id"], row["task_index"])]
        reason = TerminalReason(row["terminal_reason"])
        writer.add(
            episode_row(
                task.episode(row["episode_index"], row.get("trial", 0)),
                reason=reason,
                instruction=task.instruction,
                max_steps=task.max_steps,
                worker="gw0",
                n_steps=10,
                wall_clock_s=0.5,
                error_message=None if reason in (TerminalReason.SUCCESS, TerminalReason.TIMEOUT) else "boom",
            )
        )
    return writer.build()
