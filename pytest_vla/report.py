"""``<output>/report.json``: the schema v1 envelope (``reflex eval``'s), plus additive detail.

The controller owns the report: every worker's rows reach it through pytest's report stream, and
the file is rewritten atomically after each finished episode, so it is valid at any moment.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

import pytest_vla
from pytest_vla.plan import EvalPlan

SCHEMA_VERSION = 1
REPORT_NAME = "report.json"
_HARNESS_PACKAGES = ("pytest", "pytest-xdist", "onnxruntime", "onnxruntime-gpu")


def _utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class ReportWriter:
    def __init__(
        self, plan: EvalPlan, protocol: dict[str, Any], workers: int, export_files: list[dict[str, Any]]
    ) -> None:
        self.plan = plan
        self.path = plan.output / REPORT_NAME
        self._protocol = protocol
        self._workers = workers
        self._started_at = _utc_now()
        self._started = time.monotonic()
        self._rows: dict[tuple[str, int, int], dict[str, Any]] = {}
        self._expected: list[tuple[str, int, int]] = []  # the selected episodes, in run order
        self._environment = _environment(plan, export_files)

    def expect(self, keys: list[tuple[str, int, int]]) -> None:
        """The episodes this run selected; those without a row are listed as missing."""
        self._expected = keys

    @property
    def rows(self) -> list[dict[str, Any]]:
        return list(self._rows.values())

    def add(self, row: dict[str, Any]) -> None:
        """Record an episode's row; a later attempt of the same episode replaces the earlier one."""
        self._rows[row_key(row)] = row

    def write(self, config: pytest.Config) -> Path:
        report = self.build()
        config.hook.pytest_vla_modify_report(config=config, report=report)
        write_json_atomically(self.path, report)
        return self.path

    def build(self) -> dict[str, Any]:
        order = {task.key: position for position, task in enumerate(self.plan.tasks)}
        episodes = sorted(
            self._rows.values(),
            key=lambda row: (order.get(f"{row['task_id']}:{row['task_index']}", len(order)), row["episode_index"]),
        )
        families = self.plan.families
        missing = [key for key in self._expected if key not in self._rows]
        # Grouped in one pass: the report is rebuilt after every episode of runs with thousands.
        by_family: dict[str, list[dict[str, Any]]] = {}
        by_task: dict[tuple[str, int], list[dict[str, Any]]] = {}
        for row in episodes:
            by_family.setdefault(row["task_id"], []).append(row)
            by_task.setdefault((row["task_id"], row["task_index"]), []).append(row)
        return {
            "schema_version": SCHEMA_VERSION,
            "reflex_version": None,
            "harness": "pytest-vla",
            "harness_version": pytest_vla.__version__,
            "suite": self.plan.suite,
            "runtime": "local",
            "seed": self.plan.seed,
            "started_at": self._started_at,
            "finished_at": _utc_now(),
            "wall_clock_s": round(time.monotonic() - self._started, 3),
            "tasks": families,
            "num_episodes_per_task": self.plan.num_episodes,
            "aggregate": _tally(episodes),
            "results": [{"task_id": family, **_tally(by_family.get(family, []))} for family in families],
            "task_results": [
                {
                    "task_id": task.family,
                    "task_index": task.index,
                    "instruction": task.instruction,
                    **_tally(by_task.get((task.family, task.index), [])),
                }
                for task in self.plan.tasks
            ],
            "episodes": episodes,
            "cost": {"total_usd": 0.0, "by_task": dict.fromkeys(families, 0.0), "cost_table_schema_version": 1},
            "modal": None,
            "env": self._environment,
            "execution_provider": self.plan.provider,
            "workers": self._workers,
            "protocol": {
                **self._protocol,
                "seed": self.plan.seed,
                "num_episodes_per_task": self.plan.num_episodes,
                "max_steps_override": self.plan.max_steps_override,
                "cameras_rendered": list(self.plan.cameras),
            },
            "video_paths": [],
            "notes": None,
            # Until every selected episode has a row (a run in progress, interrupted or killed).
            "partial": bool(missing),
            "missing_episodes": [
                {"task_id": family, "task_index": index, "episode_index": episode} for family, index, episode in missing
            ],
        }


def row_key(row: dict[str, Any]) -> tuple[str, int, int]:
    """(family, task index, episode) of a report row: what identifies an episode across runs."""
    return row["task_id"], row["task_index"], row["episode_index"]


def _tally(rows: list[dict[str, Any]]) -> dict[str, Any]:
    n_success = sum(1 for row in rows if row["success"])
    return {
        "success_rate": round(n_success / len(rows), 6) if rows else 0.0,
        "n_success": n_success,
        "n_total": len(rows),
    }


def _environment(plan: EvalPlan, files: list[dict[str, Any]]) -> dict[str, Any]:
    versions = {}
    for package in _HARNESS_PACKAGES:
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return {
        "timestamp_utc": _utc_now(),
        **_git_state(),
        "python_version": sys.version.split()[0],
        "platform": platform.platform(),
        "export_dir": str(plan.export),
        "onnx_files": [entry for entry in files if entry["name"].endswith(".onnx")],
        "export_files": files,
        "versions": versions,
    }


def _git_state() -> dict[str, Any]:
    """The commit of the directory pytest runs in, so a number can be traced to its code."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain"], capture_output=True, text=True, timeout=10, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {"git_sha": None, "git_dirty": None}
    return {"git_sha": sha, "git_dirty": bool(status.strip())}


def write_json_atomically(path: Path, data: dict[str, Any]) -> None:
    """Write to a temporary file beside ``path`` and rename it over: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
            json.dump(data, stream, indent=2)
            stream.write("\n")
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
