"""Which ``--dist`` mode is fastest on real LIBERO: wall time and env builds per mode.

Run from the repository root: ``.venv/bin/python benchmarks/dist_modes.py [--tasks ...]``.
Each mode runs the same selection in a fresh output directory; an env build is a row whose
``env_construction_s`` is non-zero (the runner rebuilt the env for that episode's task).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODES = ("load", "loadscope", "loadfile", "worksteal")


def run_mode(mode: str, args: argparse.Namespace, output: Path) -> dict[str, object]:
    command = [
        sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
        "--vla-export", args.export, "--vla-tasks", args.tasks,
        "--vla-num-episodes", str(args.episodes), "--vla-output", str(output),
        "-n", str(args.workers), "--dist", mode,
    ]  # fmt: skip
    if args.max_steps:
        command += ["--vla-max-steps", str(args.max_steps)]
    started = time.perf_counter()
    subprocess.run(command, check=False, capture_output=True, cwd=output.parent)
    wall_s = time.perf_counter() - started
    rows = json.loads((output / "report.json").read_text())["episodes"]
    builds = [row["env_construction_s"] for row in rows if row["env_construction_s"] > 0]
    return {
        "mode": mode,
        "wall_s": round(wall_s, 1),
        "episodes": len(rows),
        "env_builds": len(builds),
        "env_build_s": round(sum(builds), 1),
        "episode_s": round(sum(row["wall_clock_s"] for row in rows), 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export", default="demo")
    parser.add_argument("--tasks", default="libero_object:0,libero_object:1,libero_object:2,libero_object:3")
    parser.add_argument("--episodes", type=int, default=3)
    parser.add_argument("--max-steps", type=int, default=10, help="0: the suite's own budget")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--modes", default=",".join(MODES))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        for mode in args.modes.split(","):
            print(json.dumps(run_mode(mode, args, Path(scratch) / mode)), flush=True)


if __name__ == "__main__":
    main()
