"""What reading the goal's conditions and stages costs per step, against the step itself (LIBERO, physics only).

Run from the repository root: ``.venv/bin/python benchmarks/goal_cost.py [--tasks ...] [--steps 200]``.
For each task it builds one physics-only env as pytest-vla does, resets it, then steps it
``--steps`` times with seeded random actions, timing ``env.step`` (which reads them once, as
every observation does) and, apart, one more read after each step: the goal's conditions, then the
stage of each object it acts on (contacts, grasp, height) and where the others are; it prints the
medians as a markdown table.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

os.environ.setdefault("MUJOCO_GL", "osmesa")

from pytest_vla.suites.base import StateConvention
from pytest_vla.suites.libero.goal import goal_state, object_positions, stages
from pytest_vla.suites.libero.suite import LiberoSuite


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="libero_spatial:0,libero_object:0,libero_goal:0,libero_10:0,libero_90:0")
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    suite = LiberoSuite()
    actions = np.random.default_rng(3).uniform(-0.6, 0.6, size=(args.steps, 7))
    print(
        "| task | conditions | objects | step ms (reads included) | conditions ms | stages and bystanders ms | share |"
    )
    print("|---|---|---|---|---|---|---|")
    for task in suite.resolve_tasks(args.tasks.split(",")):
        env = suite.make_env(task, (), 7, StateConvention())
        env.reset(0)
        problem = env._env.env
        steps, goal_reads, stage_reads = [], [], []
        for action in actions:
            started = time.perf_counter()
            env.step(action)
            stepped = time.perf_counter()
            goal = goal_state(problem)
            read = time.perf_counter()
            now = stages(problem, env._moved, goal, env._at_reset)
            object_positions(problem, env._bystanders)  # the objects the goal does not name, for side effects
            steps.append(stepped - started)
            goal_reads.append(read - stepped)
            stage_reads.append(time.perf_counter() - read)
        env.close()
        step_ms, goal_ms, stage_ms = (1000 * statistics.median(times) for times in (steps, goal_reads, stage_reads))
        print(
            f"| {task.key} | {len(goal)} | {len(now)} | {step_ms:.2f} | {goal_ms:.3f} | {stage_ms:.3f} | "
            f"{(goal_ms + stage_ms) / step_ms:.1%} |"
        )


if __name__ == "__main__":
    main()
