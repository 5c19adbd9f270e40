"""What MetaWorld and ALOHA cost in pytest-vla, and whole demo runs against the plain LeRobot-style loop.

Run from the repository root: ``.venv/bin/python benchmarks/suite_costs.py [--episodes 2] [--skip-runs]``.

Part 1, per suite (a few tasks): env build, a seeded reset, a physics-only step, and rendering one
camera, medians in seconds, measured through each suite's env as the runner uses it.

Part 2, whole commands: the suite's demo policy (``--vla-policy demo``, no camera) with ``-n 1`` and
``-n 2``, against the loop of ``tests/lerobot_<suite>.py`` with the same policy in one process,
which renders its camera every step as LeRobot's env does (it cannot be told not to). Episodes per hour.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("MUJOCO_GL", "osmesa")

import numpy as np  # noqa: E402

from pytest_vla.suites.aloha import AlohaSuite  # noqa: E402
from pytest_vla.suites.base import StateConvention  # noqa: E402
from pytest_vla.suites.metaworld import MetaworldSuite  # noqa: E402

COSTS = {"metaworld": ["reach-v3", "push-v3", "pick-place-v3"], "aloha": ["insertion", "transfer_cube"]}
RUNS = {"metaworld": "metaworld_easy:0,metaworld_easy:1,metaworld_medium:0,metaworld_hard:3,metaworld_very_hard:0",
        "aloha": "aloha"}  # fmt: skip


def costs(suite_name: str, repeats: int = 5) -> None:
    suite = {"metaworld": MetaworldSuite, "aloha": AlohaSuite}[suite_name]()
    camera = suite.video_camera
    for name, task in zip(COSTS[suite_name], suite.resolve_tasks(COSTS[suite_name]), strict=True):
        started = time.perf_counter()
        env = suite.make_env(task, (), suite.default_seed, StateConvention())
        build_s = time.perf_counter() - started
        resets, steps = [], []
        for episode in range(repeats):
            started = time.perf_counter()
            env.reset(episode)
            resets.append(time.perf_counter() - started)
            for _ in range(20):
                started = time.perf_counter()
                env.step(np.asarray(suite.idle_action))
                steps.append(time.perf_counter() - started)
        env.close()
        rendering = suite.make_env(task, (camera,), suite.default_seed, StateConvention())
        rendering.reset(0)
        rendered = []
        for _ in range(repeats):
            started = time.perf_counter()
            rendering.step(np.asarray(suite.idle_action))
            rendered.append(time.perf_counter() - started)
        rendering.close()
        render_s = statistics.median(rendered) - statistics.median(steps)
        print(f"| {suite_name} | {name} | {build_s:.2f} | {statistics.median(resets):.3f} | "
              f"{statistics.median(steps) * 1000:.2f} | {render_s * 1000:.0f} ({camera}) |")  # fmt: skip


def whole_runs(suite_name: str, episodes: int) -> None:
    with tempfile.TemporaryDirectory() as work:
        for workers in (1, 2):
            output = Path(work) / f"n{workers}"
            command = [sys.executable, "-m", "pytest", "--vla-suite", suite_name, "--vla-policy", "demo",
                       "--vla-tasks", RUNS[suite_name], "--vla-num-episodes", str(episodes), "--vla-output",
                       str(output), "-p", "no:cacheprovider", "-q"]  # fmt: skip
            command += ["-n", "2", "--dist", "worksteal"] if workers == 2 else ["-p", "no:xdist"]
            started = time.perf_counter()
            subprocess.run(command, cwd=work, capture_output=True, check=False)
            wall = time.perf_counter() - started
            report = json.loads((output / "report.json").read_text())
            done = report["aggregate"]
            print(f"| {suite_name} | pytest-vla -n {workers} | {done['n_total']} | {done['n_success']} | {wall:.1f} | "
                  f"{done['n_total'] / wall * 3600:.0f} |")  # fmt: skip
        started = time.perf_counter()
        total, succeeded = plain(suite_name, episodes)
        wall = time.perf_counter() - started
        print(
            f"| {suite_name} | plain loop (renders) | {total} | {succeeded} | {wall:.1f} | {total / wall * 3600:.0f} |"
        )


def plain(suite_name: str, episodes: int) -> tuple[int, int]:
    """The reference loop, whole (imports, env builds), in a process of its own: (episodes, successes)."""
    command = [sys.executable, __file__, "--plain", suite_name, "--episodes", str(episodes)]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    total, succeeded = out.split()[-2:]
    return int(total), int(succeeded)


def _plain(suite_name: str, episodes: int) -> None:
    suite = {"metaworld": MetaworldSuite, "aloha": AlohaSuite}[suite_name]()
    tasks = suite.resolve_tasks(RUNS[suite_name].split(","))
    total = succeeded = 0
    if suite_name == "metaworld":
        from metaworld import policies

        from pytest_vla.suites.metaworld.suite import task_name
        from pytest_vla.suites.metaworld.tasks import EXPERT_POLICIES
        from tests import lerobot_metaworld

        for task in tasks:
            name = task_name(task)
            for episode in range(episodes):  # one env per task, as one sub-env of lerobot-eval's
                act = getattr(policies, EXPERT_POLICIES[name])().get_action
                result = lerobot_metaworld.episode(name, 1000 + episode, lambda o, a=act: a(o["raw"]))
                total, succeeded = total + 1, succeeded + result["success"]
        lerobot_metaworld.close()
    else:
        from pytest_vla.suites.aloha.scripted import ScriptedBimanual
        from pytest_vla.suites.base import Observation
        from tests import lerobot_aloha

        for task in tasks:
            for episode in range(episodes):
                env = lerobot_aloha.make_env(task.instruction)
                policy = ScriptedBimanual()
                policy.begin_episode(1000, task, episode)

                def act(observation, env=env, policy=policy):
                    physics = env.unwrapped._env.physics
                    seen = Observation(
                        images={}, state=observation["agent_pos"], raw={"qpos": physics.data.qpos.copy()}
                    )
                    return policy.act(seen)[0]

                result = lerobot_aloha.episode(env, 1000 + episode, act)
                lerobot_aloha.close(env)
                total, succeeded = total + 1, succeeded + result["success"]
    print(total, succeeded)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=2)
    parser.add_argument("--skip-runs", action="store_true")
    parser.add_argument("--plain", help=argparse.SUPPRESS)  # the reference loop's own process
    args = parser.parse_args()
    if args.plain:
        _plain(args.plain, args.episodes)
        return
    print("| suite | task | env build s | reset s | step ms (physics) | render ms per camera |")
    print("|---|---|---|---|---|---|")
    for name in COSTS:
        costs(name)
    if not args.skip_runs:
        print("\n| suite | run | episodes | succeeded | wall s | episodes/h |")
        print("|---|---|---|---|---|---|")
        for name in RUNS:
            whole_runs(name, args.episodes)


if __name__ == "__main__":
    main()
