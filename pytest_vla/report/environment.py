"""Where a number came from: package versions, the git state, the machine."""

from __future__ import annotations

import datetime as dt
import platform
import subprocess
import sys
from importlib import metadata
from typing import Any


def package_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"  # UTC, as report.json's started_at and finished_at


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime(TIMESTAMP_FORMAT)


def machine() -> dict[str, Any]:
    return {
        "timestamp_utc": utc_now(),
        "hostname": platform.node(),  # which machine of a cluster ran a shard
        **git_state(),
        "python_version": sys.version.split()[0],
        "platform": platform.platform(),
    }


def git_state() -> dict[str, Any]:
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
