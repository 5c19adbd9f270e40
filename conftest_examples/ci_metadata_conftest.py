"""Example conftest.py: stamp CI metadata into report.json and print a line per finished episode.

Copy it as conftest.py into the directory you run ``pytest --vla-export ...`` from.
"""

from __future__ import annotations

import os
from typing import Any

import pytest


def pytest_vla_episode_finished(config: pytest.Config, episode: dict[str, Any]) -> None:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is not None:
        outcome = "ok" if episode["success"] else episode["terminal_reason"]
        reporter.write_line(f"{episode['task_id']}:{episode['task_index']}:ep{episode['episode_index']} {outcome}")


def pytest_vla_modify_report(config: pytest.Config, report: dict[str, Any]) -> None:
    report["ci"] = {"job_url": os.environ.get("CI_JOB_URL"), "commit": os.environ.get("CI_COMMIT_SHA")}
