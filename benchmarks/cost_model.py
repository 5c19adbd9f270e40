"""How far the cost preview's estimate is from real LIBERO runs: one selection at several step budgets.

Run from the repository root: ``.venv/bin/python benchmarks/cost_model.py [--budgets 20,60]``.
For each budget it asks ``--vla-cost-preview`` for the estimate, then runs the same selection and
compares the estimate with the run's own wall time (report.json's ``wall_clock_s``: from the end
of the preflight to the last episode). The export is a one-camera test model that never
succeeds, so every episode runs its full budget, as the model assumes.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.models import camera_export


def pytest_vla(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest", "-q", *args], cwd=cwd, capture_output=True, text=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="libero_object:0,libero_object:1,libero_spatial:5")
    parser.add_argument("--episodes", type=int, default=2)
    parser.add_argument("--budgets", default="20,60")
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        camera_export(work / "export", size=224)
        for budget in map(int, args.budgets.split(",")):
            output = work / f"out-{budget}"
            common = ["--vla-export", "export", "--vla-tasks", args.tasks, "--vla-num-episodes", str(args.episodes),
                      "--vla-max-steps", str(budget), "--vla-output", str(output), "-n", str(args.workers),
                      "--dist", "worksteal"]  # fmt: skip
            preview = pytest_vla([*common, "--vla-cost-preview"], work)
            match = re.search(r"about (\d+)m(\d+)s wall time", preview.stdout)
            if match is None:
                sys.exit(f"no estimate in the preview's output:\n{preview.stdout}{preview.stderr}")
            estimate_s = 60 * int(match[1]) + int(match[2])
            pytest_vla(common, work)
            report = json.loads((output / "report.json").read_text())
            actual_s = report["wall_clock_s"]
            rows = report["episodes"]
            per_worker: dict[str, float] = {}
            for row in rows:
                per_worker[row["worker"]] = per_worker.get(row["worker"], 0.0) + row["wall_clock_s"] + row[
                    "env_construction_s"]  # fmt: skip
            print(json.dumps({
                "budget": budget, "episodes": len(report["episodes"]), "workers": args.workers,
                "estimate_s": estimate_s, "actual_s": round(actual_s, 1),
                "error": f"{100 * (estimate_s - actual_s) / actual_s:+.0f}%",
                "episode_s": round(sum(row["wall_clock_s"] for row in rows) / len(rows), 2),
                "busiest_worker_s": round(max(per_worker.values()), 1),
                "preview_per_step": re.search(r"per step (.*?);", preview.stdout)[1],
                "run_timings": report["preflight"]["timings"],
            }))  # fmt: skip


if __name__ == "__main__":
    main()
