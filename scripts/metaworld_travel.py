"""Measure each jointed MetaWorld task's travel to success: the numbers of ``TaskObject.travel``.

Run from the repository root: ``.venv/bin/python scripts/metaworld_travel.py [--episodes 10]``.
For every task whose object is carried by one hinge or slide, each episode (env seeded 0, 1, ...)
runs MetaWorld's scripted expert to its first successful step and takes the joint's position then
minus its position after the reset; it prints the mean (the table's value), the range, and the
table's current value beside it.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pytest_vla.suites.metaworld.env import build_env
from pytest_vla.suites.metaworld.goal import OBJECTS, GoalReader
from pytest_vla.suites.metaworld.tasks import EXPERT_POLICIES


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=10)
    args = parser.parse_args()
    from metaworld import policies

    warnings.filterwarnings("ignore", "Constant\\(s\\) may be too high", UserWarning)
    print("| task | travel (mean) | min | max | table |")
    print("|---|---|---|---|---|")
    for name, found in OBJECTS.items():
        env = build_env(name, render=False)
        model = env.model
        body = GoalReader.of(model, name).body
        if model.body_jntnum[body] != 1 or int(model.jnt_type[model.body_jntadr[body]]) not in (2, 3):  # slide, hinge
            env.close()
            continue
        address = model.jnt_qposadr[model.body_jntadr[body]]
        travels = []
        for episode in range(args.episodes):
            env.seed(episode)
            observation, _ = env.reset(seed=episode)
            start, expert = float(env.data.qpos[address]), getattr(policies, EXPERT_POLICIES[name])()
            for _ in range(500):
                observation, _, _, _, info = env.step(np.asarray(expert.get_action(observation), dtype=np.float32))
                if info["success"]:
                    travels.append(float(env.data.qpos[address]) - start)
                    break
        env.close()
        print(f"| {name} | {np.mean(travels):+.4f} | {min(travels):+.4f} | {max(travels):+.4f} | {found.travel} |")


if __name__ == "__main__":
    main()
