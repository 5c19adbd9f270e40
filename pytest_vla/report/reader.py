"""Reading a report.json back, and deciding whether its rows can stand for episodes of another run.

A finished episode is a function of (export, protocol, seed, task, episode), so a row of an
earlier run can stand for the same episode of this one (``--vla-resume``, ``--lf``, and later a
merge of shards), provided the export's files and the protocol are the same; anything else is
refused, with the difference named.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pytest_vla.errors import ReportError, read_json
from pytest_vla.report.schema import EpisodeRow, TaskSpec, TerminalReason
from pytest_vla.report.shards import Shard
from pytest_vla.report.writer import Invocation, RunInfo

_ROW_KEYS = ("task_id", "task_index", "episode_index", "success", "terminal_reason")


def load_report(path: Path) -> dict[str, Any]:
    report = read_json(path, ReportError)
    if not isinstance(report, dict):
        raise ReportError(f"{path} is not a pytest-vla report")
    return report


def run_info(path: Path, report: dict[str, Any]) -> RunInfo:
    """What ``report`` says about its run besides the rows, as the writer took it."""
    try:
        env = report["env"]
        invocation = report.get("invocation")
        return RunInfo(
            suite=report["suite"],
            seed=report["seed"],
            tasks=tuple(
                TaskSpec(
                    result["task_id"],
                    result["task_index"],
                    result["instruction"],
                    result["max_steps"],
                    result.get("clean_task"),
                )
                for result in report["task_results"]
            ),
            num_episodes=report["num_episodes_per_task"],
            protocol=report["protocol"],
            provider=report["execution_provider"],
            workers=report["workers"],
            export_dir=Path(env["export_dir"]),
            export_files=env["export_files"],
            shard=Shard.from_json(report["shard"]) if report.get("shard") else None,
            invocation=Invocation(invocation["args"], invocation["cwd"]) if invocation else None,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ReportError(f"{path} does not describe its run as this pytest-vla does (missing or bad: {exc})") from None


def compatible_rows(
    path: Path,
    report: dict[str, Any],
    *,
    suite: str,
    seed: int,
    protocol: dict[str, Any],
    export_files: list[dict[str, Any]],
) -> list[EpisodeRow]:
    """The rows of ``report`` (read from ``path``) if it was made under this export, suite, seed and protocol."""
    earlier_files = _files(report)
    if earlier_files is None:
        raise ReportError(f"{path} does not record the export's files (env.export_files)")
    now_files = {entry["name"]: entry["sha256"] for entry in export_files}
    if earlier_files != now_files:
        changed = sorted(
            name for name in earlier_files.keys() | now_files.keys() if earlier_files.get(name) != now_files.get(name)
        )
        raise ReportError(f"{path} was made with a different export (changed: {', '.join(changed)})")
    for name, earlier, now in (("suite", report.get("suite"), suite), ("seed", report.get("seed"), seed)):
        if earlier != now:
            raise ReportError(f"{path} was made with {name} {earlier!r}, this run has {now!r}")
    earlier_protocol = report.get("protocol")
    if not isinstance(earlier_protocol, dict):
        raise ReportError(f"{path} does not record its protocol")
    for key, value in protocol.items():
        if earlier_protocol.get(key) != value:
            raise ReportError(
                f"{path} was made under another protocol: {key} was {earlier_protocol.get(key)!r}, now {value!r}"
            )
    rows = report.get("episodes")
    if not isinstance(rows, list) or not all(is_row(row) for row in rows):
        raise ReportError(f"{path} has malformed episode rows")
    return rows


def _files(report: dict[str, Any]) -> dict[str, str] | None:
    env = report.get("env")
    files = env.get("export_files") if isinstance(env, dict) else None
    if not isinstance(files, list) or not all(
        isinstance(entry, dict) and isinstance(entry.get("name"), str) and isinstance(entry.get("sha256"), str)
        for entry in files
    ):
        return None
    return {entry["name"]: entry["sha256"] for entry in files}


def is_row(row: Any) -> bool:
    return (
        isinstance(row, dict)
        and all(key in row for key in _ROW_KEYS)
        and isinstance(row["task_id"], str)
        and all(isinstance(row[key], int) and not isinstance(row[key], bool) for key in ("task_index", "episode_index"))
        and isinstance(row["success"], bool)
        and row["terminal_reason"] in {reason.value for reason in TerminalReason}
    )
