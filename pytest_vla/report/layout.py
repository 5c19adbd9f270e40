"""What a run leaves in its output directory (``--vla-output``), named once.

Every module that writes or reads a run's files takes its paths from :class:`OutputLayout`:
report.json, the episode journal, report.html, junit.xml (merge's and a run's default name), the
per-episode videos and trajectories, the watchdog's notes and the preflight's log. When a new run
starts in a directory that holds an earlier run's results, those move to ``previous/<started>/``
(:meth:`OutputLayout.move_aside`).
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_vla.report.environment import TIMESTAMP_FORMAT
from pytest_vla.report.schema import EpisodeId

REPORT_NAME = "report.json"
JOURNAL_NAME = "episodes.jsonl"
HTML_NAME = "report.html"
JUNIT_NAME = "junit.xml"
PREVIOUS_NAME = "previous"
_STAMP = "%Y%m%dT%H%M%SZ"  # a directory name: no colons, which artifact uploaders and Windows refuse


@dataclass(frozen=True)
class OutputLayout:
    root: Path

    @property
    def report_json(self) -> Path:
        return self.root / REPORT_NAME

    @property
    def journal(self) -> Path:
        """One JSON row per line, appended as each episode finishes: what a killed run leaves for --vla-resume."""
        return self.root / JOURNAL_NAME

    @property
    def report_html(self) -> Path:
        return self.root / HTML_NAME

    @property
    def junit(self) -> Path:
        """Where ``pytest-vla merge`` writes JUnit and looks for a shard's; a run writes wherever --junitxml says."""
        return self.root / JUNIT_NAME

    @property
    def videos(self) -> Path:
        return self.root / "videos"

    @property
    def trajectories(self) -> Path:
        return self.root / "trajectories"

    @property
    def watchdog(self) -> Path:
        """The watchdog's notes, one per process it ended; emptied when a run starts."""
        return self.root / ".vla-watchdog"

    @property
    def preflight_log(self) -> Path:
        return self.root / "preflight.log"

    @property
    def previous(self) -> Path:
        return self.root / PREVIOUS_NAME

    def video(self, episode: EpisodeId) -> Path:
        return self.videos / f"{episode.file_stem}.mp4"

    def trajectory(self, episode: EpisodeId) -> Path:
        return self.trajectories / f"{episode.file_stem}.npz"

    def watchdog_note(self, worker: str) -> Path:
        return self.watchdog / f"{worker}.json"

    def results(self, junit: Path | None = None) -> list[Path]:
        """The earlier run's results present here: its report and journal, page, JUnit, videos and trajectories.

        ``junit``: this run's --junitxml, when it lies in this directory.
        """
        files = [self.report_json, self.journal, self.report_html, self.junit]
        if junit is not None and junit.parent.resolve() == self.root.resolve() and junit.name != JUNIT_NAME:
            files.append(self.root / junit.name)
        present = [path for path in files if path.is_symlink() or path.exists()]
        return present + [path for path in (self.videos, self.trajectories) if path.is_dir()]

    def move_aside(self, paths: list[Path], started_at: str | None) -> Path:
        """Move ``paths`` into ``previous/<started_at>/`` (the earlier report's start, else its files' time)."""
        stamp = _stamp(started_at) or dt.datetime.fromtimestamp(
            max(path.lstat().st_mtime for path in paths), dt.timezone.utc
        ).strftime(_STAMP)
        target = self.previous / stamp
        suffix = 1
        while target.exists():
            suffix += 1
            target = self.previous / f"{stamp}-{suffix}"
        target.mkdir(parents=True)
        for path in paths:
            os.replace(path, target / path.name)  # a rename: same file system, videos of gigabytes cost nothing
        return target


def relocated(report: dict[str, Any], old_root: Path, new_root: Path) -> dict[str, Any]:
    """``report`` with the video and trajectory paths that lay under ``old_root`` under ``new_root`` instead.

    What a report moved aside says about its files: else its rows, and its page's links, would
    name the next run's videos of the same episodes.
    """

    def moved(value: Any) -> Any:
        if isinstance(value, str) and Path(value).is_relative_to(old_root):
            return str(new_root / Path(value).relative_to(old_root))
        return value

    rows = report.get("episodes")
    if isinstance(rows, list):
        report = {
            **report,
            "episodes": [
                {**row, **{key: moved(row.get(key)) for key in ("video_path", "trajectory_path") if key in row}}
                if isinstance(row, dict)
                else row
                for row in rows
            ],
        }
    if isinstance(report.get("video_paths"), list):
        report = {**report, "video_paths": [moved(path) for path in report["video_paths"]]}
    return report


def _stamp(started_at: str | None) -> str | None:
    """``20260102T030405Z`` from report.json's ``started_at``; None for anything else (the report may be foreign)."""
    if not isinstance(started_at, str):
        return None
    try:
        moment = dt.datetime.strptime(started_at, TIMESTAMP_FORMAT)
    except ValueError:
        return None
    return moment.strftime(_STAMP)
