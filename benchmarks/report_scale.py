"""The harness's own cost per episode as a run grows: a trivial one-step suite, 250 to 4,500 episodes.

Run from the repository root: ``.venv/bin/python benchmarks/report_scale.py [--sizes 250,1500,4500]``
(``PYTHONPATH=OTHER_CHECKOUT`` measures another checkout's pytest-vla with the same suite).
The suite (``tests/fake_suite.py``'s, registered through the ``pytest_vla_make_suite`` hook) has
50 episodes per task, each done at its first step, so what is measured is pytest-vla's own work
per episode: the item, the row, the journal and report.json. Each size runs in one process, no
xdist. Per size it prints the episodes' span (report.json's ``wall_clock_s``: from the end of the
preflight to the last write), milliseconds per episode, the marginal milliseconds per episode
against the previous size, the whole command's time and the controller's peak resident memory.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.models import state_only_export

REPOSITORY = Path(__file__).resolve().parents[1]

EPISODES_PER_TASK = 50
CONFTEST = """
import os

from tests.fake_suite import FakeEnv, FakeSuite
from pytest_vla.report.schema import TaskSpec


class OneStepEnv(FakeEnv):
    def step(self, action):
        observation, _ = super().step(action)
        return observation, True  # done at once: the episode costs the harness, not a simulator


class ScaleSuite(FakeSuite):
    name = "scale"
    max_episodes = 50

    def resolve_tasks(self, selection):
        return [TaskSpec("fake", i, f"do fake thing {i}", 1) for i in range(int(os.environ["SCALE_TASKS"]))]

    def make_env(self, task, cameras, seed, state):
        return OneStepEnv(task, cameras)


def pytest_vla_make_suite(config, name):
    return ScaleSuite() if name == "scale" else None
"""


def run(work: Path, episodes: int) -> dict[str, float]:
    output = work / f"out-{episodes}"
    environment = {**os.environ, "SCALE_TASKS": str(episodes // EPISODES_PER_TASK), "FAKE_SUITE_SCRIPT": "{}"}
    # The conftest imports tests.fake_suite: this checkout's, after a PYTHONPATH given to measure another.
    environment["PYTHONPATH"] = os.pathsep.join(filter(None, [os.environ.get("PYTHONPATH"), str(REPOSITORY)]))
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:xdist", "-p", "no:randomly", "--vla-export",
               "export", "--vla-suite", "scale", "--vla-num-episodes", str(EPISODES_PER_TASK),
               "--vla-output", str(output)]  # fmt: skip
    started = time.monotonic()
    with (work / f"log-{episodes}.txt").open("w") as log:
        process = subprocess.Popen(command, cwd=work, env=environment, stdout=log, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
    command_s = time.monotonic() - started
    report = json.loads((output / "report.json").read_text())
    if os.waitstatus_to_exitcode(status) != 0 or len(report["episodes"]) != episodes:
        sys.exit(f"{episodes} episodes: exit {status}, {len(report['episodes'])} rows; see {work}/log-{episodes}.txt")
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return {"span_s": report["wall_clock_s"], "command_s": command_s, "peak_rss_mib": usage.ru_maxrss * scale / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="250,1500,4500")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    if any(size % EPISODES_PER_TASK for size in sizes):
        sys.exit(f"--sizes: each a multiple of {EPISODES_PER_TASK}")
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        (work / "conftest.py").write_text(CONFTEST)
        state_only_export(work / "export")
        previous: tuple[int, float] | None = None
        print("| episodes | span s | ms/episode | marginal ms/episode | command s | controller peak RSS MiB |")
        print("|---:|---:|---:|---:|---:|---:|")
        for episodes in sizes:
            figures = run(work, episodes)
            marginal = (
                "" if previous is None else f"{1000 * (figures['span_s'] - previous[1]) / (episodes - previous[0]):.2f}"
            )
            print(f"| {episodes} | {figures['span_s']:.1f} | {1000 * figures['span_s'] / episodes:.2f} | {marginal} "
                  f"| {figures['command_s']:.1f} | {figures['peak_rss_mib']:.0f} |", flush=True)  # fmt: skip
            previous = (episodes, figures["span_s"])


if __name__ == "__main__":
    main()
