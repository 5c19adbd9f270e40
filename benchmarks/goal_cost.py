"""What reading the goal's conditions and stages costs per step, against the step itself (physics only).

Run from the repository root: ``.venv/bin/python benchmarks/goal_cost.py [--tasks ...] [--steps 200]``.
For each LIBERO task it builds one physics-only env as pytest-vla does, resets it, then steps it
``--steps`` times with seeded random actions, timing ``env.step`` (which reads them once, as
every observation does) and, apart, one more read after each step: the goal's conditions, then the
stage of each object it acts on (contacts, grasp, height, joints) and where the others are; it
prints the medians as a markdown table. ``--metaworld-tasks`` does the same for MetaWorld tasks,
timing MetaWorld's own step and the reading (its success is in the step's info).
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
from pytest_vla.suites.metaworld import MetaworldSuite


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="libero_spatial:0,libero_object:0,libero_goal:0,libero_10:0,libero_90:0")
    parser.add_argument("--metaworld-tasks", default="pick-place-v3,door-open-v3,drawer-close-v3,dial-turn-v3")
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    libero(args.tasks, args.steps)
    metaworld(args.metaworld_tasks, args.steps)


def libero(tasks: str, n_steps: int) -> None:
    suite = LiberoSuite()
    actions = np.random.default_rng(3).uniform(-0.6, 0.6, size=(n_steps, 7))
    print(
        "| task | conditions | objects | step ms (reads included) | conditions ms | stages and bystanders ms | share |"
    )
    print("|---|---|---|---|---|---|---|")
    for task in suite.resolve_tasks(tasks.split(",")):
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


def metaworld(tasks: str, n_steps: int) -> None:
    suite = MetaworldSuite()
    actions = np.random.default_rng(3).uniform(-1.0, 1.0, size=(n_steps, 4)).astype(np.float32)
    print("\n| MetaWorld task | MetaWorld step ms | reading ms | share |")
    print("|---|---|---|---|")
    for task in suite.resolve_tasks(tasks.split(",")):
        env = suite.make_env(task, (), 1000, StateConvention())
        env.reset(0)
        steps, reads = [], []
        for action in actions:
            started = time.perf_counter()
            _, _, _, _, info = env._env.step(action)
            stepped = time.perf_counter()
            env._goal.read(env._env.data, bool(info["success"]), env._rest)
            steps.append(stepped - started)
            reads.append(time.perf_counter() - stepped)
        env.close()
        step_ms, read_ms = (1000 * statistics.median(times) for times in (steps, reads))
        print(f"| {task.name} | {step_ms:.3f} | {read_ms:.3f} | {read_ms / step_ms:.1%} |")


if __name__ == "__main__":
    main()
