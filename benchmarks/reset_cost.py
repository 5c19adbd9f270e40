"""What an episode's reset costs with the compiled model reused, against LIBERO's full hard reset.

Run from the repository root: ``.venv/bin/python benchmarks/reset_cost.py [--tasks ...] [--resets 5]``.
For each task it builds one physics-only env as pytest-vla does, times ``--resets`` resets
(re-seed, hard reset, init state, the 10 settle steps) with the model reused, then the same with
robosuite's own reset (every reset recompiles), and prints the medians as a markdown table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

os.environ.setdefault("MUJOCO_GL", "osmesa")

from pytest_vla.suites.base import StateConvention
from pytest_vla.suites.libero.env import LiberoEnv
from pytest_vla.suites.libero.suite import LiberoSuite


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="libero_spatial:0,libero_object:0,libero_goal:0,libero_10:0,libero_90:0")
    parser.add_argument("--resets", type=int, default=5)
    args = parser.parse_args()
    suite = LiberoSuite()
    print("| task | env build s | reset s, model reused | reset s, recompiled | saved |")
    print("|---|---|---|---|---|")
    for task in suite.resolve_tasks(args.tasks.split(",")):
        started = time.perf_counter()
        env = suite.make_env(task, (), 7, StateConvention())
        build_s = time.perf_counter() - started
        env.reset(0)  # the first reset compiles in either case
        reused = _median_reset(env, args.resets)
        del env._env.env.reset  # robosuite's own reset again: it recompiles every time
        recompiled = _median_reset(env, args.resets)
        env.close()
        print(f"| {task.key} | {build_s:.2f} | {reused:.3f} | {recompiled:.3f} | {1 - reused / recompiled:.0%} |")


def _median_reset(env: LiberoEnv, resets: int) -> float:
    durations = []
    for episode in range(resets):
        started = time.perf_counter()
        env.reset(episode)
        durations.append(time.perf_counter() - started)
    return statistics.median(durations)


if __name__ == "__main__":
    main()
