"""Running ``pytest-vla merge`` as users do, and comparing reports of the same episodes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

# What differs between two runs of the same episodes: timings and which process ran them.
VARYING = ("wall_clock_s", "worker", "env_construction_s")


def run_merge(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    command = [str(Path(sys.executable).parent / "pytest-vla"), "merge", *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, cwd=cwd, check=False)


def stable_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The rows without what varies between runs: equal for the same episodes, however they were run."""
    return [{key: value for key, value in row.items() if key not in VARYING} for row in report["episodes"]]
