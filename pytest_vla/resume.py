"""``--vla-resume``: pick up an interrupted or extended run from its report.json.

A finished episode is a function of (export, protocol, seed, task, episode), so a row of an
earlier run can stand for the same episode of this one, provided the export's files and the
protocol are the same; anything else is refused, with the difference named.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pytest_vla.report import REPORT_NAME

_ROW_KEYS = ("task_id", "task_index", "episode_index", "success", "terminal_reason")


class ResumeError(Exception):
    """The earlier report cannot be resumed; the message is one line naming why."""


def finished_rows(
    output: Path, *, suite: str, seed: int, protocol: dict[str, Any], export_files: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """The rows of ``<output>/report.json`` this run may keep (none when there is no report yet)."""
    path = output / REPORT_NAME
    if not path.is_file():
        return []
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ResumeError(f"--vla-resume: {path} is not valid JSON: {exc}") from None
    if not isinstance(report, dict):
        raise ResumeError(f"--vla-resume: {path} is not a pytest-vla report")
    earlier_files = _files(report)
    if earlier_files is None:
        raise ResumeError(f"--vla-resume: {path} does not record the export's files (env.export_files)")
    now_files = {entry["name"]: entry["sha256"] for entry in export_files}
    if earlier_files != now_files:
        changed = sorted(
            name for name in earlier_files.keys() | now_files.keys() if earlier_files.get(name) != now_files.get(name)
        )
        raise ResumeError(f"--vla-resume: {path} was made with a different export (changed: {', '.join(changed)})")
    for name, earlier, now in (("suite", report.get("suite"), suite), ("seed", report.get("seed"), seed)):
        if earlier != now:
            raise ResumeError(f"--vla-resume: {path} was made with {name} {earlier!r}, this run has {now!r}")
    earlier_protocol = report.get("protocol")
    if not isinstance(earlier_protocol, dict):
        raise ResumeError(f"--vla-resume: {path} does not record its protocol")
    for key, value in protocol.items():
        if earlier_protocol.get(key) != value:
            raise ResumeError(
                f"--vla-resume: {path} was made under another protocol: {key} was {earlier_protocol.get(key)!r}, "
                f"now {value!r}"
            )
    rows = report.get("episodes")
    if not isinstance(rows, list) or not all(_is_row(row) for row in rows):
        raise ResumeError(f"--vla-resume: {path} has malformed episode rows")
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


def _is_row(row: Any) -> bool:
    return (
        isinstance(row, dict)
        and all(key in row for key in _ROW_KEYS)
        and isinstance(row["task_id"], str)
        and all(isinstance(row[key], int) and not isinstance(row[key], bool) for key in ("task_index", "episode_index"))
    )
