"""The per-step round trip of a served policy on loopback: one 256x256 camera, a server that answers at once.

Run from the repository root: ``.venv/bin/python benchmarks/served_round_trip.py [--steps 500]``.
Each row times ``Policy.act`` (build the request, encode, send, the server decodes and answers,
decode, check): vla-eval's plain protocol against vla-eval's own PredictModelServer and against a
bare websocket server that answers each frame at once, pytest-vla's extension against that bare
server, and openpi's protocol (two cameras at 224x224) against openpi's server; no model runs in
these. The last two rows run one model, a 256x256-camera export, in-process and through
``pytest-vla serve`` (pytest-vla's extension): their difference is what serving adds per query.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vla_eval import serve_background

from pytest_vla.export.manifest import load_manifest
from pytest_vla.policy.base import Policy
from pytest_vla.policy.onnx import OnnxPolicy
from pytest_vla.policy.served import connect_policy
from pytest_vla.policy.wire import Frame, pack_frame, unpack_frame
from pytest_vla.report.schema import TaskSpec
from pytest_vla.suites.libero import LiberoSuite
from tests.models import camera_export
from tests.served_servers import (
    VLA_EVAL_HELLO,
    ScriptedOpenpiPolicy,
    ScriptedServer,
    hostile_server,
    libero_observation,
    openpi_server,
)

TASK = TaskSpec("libero_object", 0, "pick up the alphabet soup and place it in the basket", 280)
EXTENSION = {
    "version": 2,
    "cameras": ["agentview"],
    "state": {},
    "raw_keys": [],
    "objects_of_interest": False,
    "action_dim": 7,
    "policy": {"kind": "onnx-export", "export_files": []},
    "max_batch_size": 1,
    "max_wait_ms": 0.0,
}


def bare_server(extended: bool) -> Any:
    """A server answering hello, then each observation with one action (plain) or a (1, 7) chunk (extended)."""
    hello = {**VLA_EVAL_HELLO, "pytest_vla": EXTENSION} if extended else VLA_EVAL_HELLO
    action = np.zeros((1, 7)) if extended else np.zeros(7, dtype=np.float32)

    def handler(connection: Any) -> None:
        first = unpack_frame(connection.recv())
        connection.send(pack_frame(Frame("hello", hello, first.seq)))
        while True:
            frame = unpack_frame(connection.recv())
            if frame.type == "observation":
                connection.send(pack_frame(Frame("action", {"actions": action}, frame.seq)))

    return hostile_server(handler)


def ms_per_step(url: str, protocol: str, steps: int) -> tuple[float, float]:
    """Median and 95th percentile of a served policy's ``act``, in ms."""
    return ms_per_query(
        lambda: connect_policy(url, protocol, LiberoSuite(), query_timeout_s=30, ready_timeout_s=30), steps
    )


def ms_per_query(make: Callable[[], Policy], steps: int) -> tuple[float, float]:
    """Median and 95th percentile of ``act``'s wall time, in ms."""
    policy = make()
    observation = libero_observation()
    policy.begin_episode(7, TASK, 0)
    for _ in range(20):  # warm-up
        policy.act(observation)
    times = []
    for _ in range(steps):
        started = time.perf_counter()
        policy.act(observation)
        times.append((time.perf_counter() - started) * 1000)
    policy.end_episode(False, steps)
    policy.close()
    return statistics.median(times), statistics.quantiles(times, n=20)[-1]


def served_export(export: Path) -> tuple[subprocess.Popen, str]:
    """``pytest-vla serve EXPORT`` on a free port, and its URL once it listens."""
    command = [str(Path(sys.executable).parent / "pytest-vla"), "serve", str(export), "--port", "0"]
    server = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    assert server.stderr is not None
    for line in server.stderr:
        url = re.search(r"serving .* at (ws://\S+)$", line.strip())
        if url:
            return server, url.group(1)
    raise SystemExit("pytest-vla serve did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500)
    args = parser.parse_args()
    rows = []
    with serve_background(ScriptedServer(actions=lambda k: np.zeros(7, np.float32)), port=0) as handle:
        rows.append(("vla-eval plain, vla-eval PredictModelServer", ms_per_step(handle.url, "vla-eval", args.steps)))
    with bare_server(extended=False) as url:
        rows.append(("vla-eval plain, bare server", ms_per_step(url, "vla-eval", args.steps)))
    with bare_server(extended=True) as url:
        rows.append(("pytest-vla extension, bare server", ms_per_step(url, "vla-eval", args.steps)))
    with openpi_server(ScriptedOpenpiPolicy(horizon=5)) as url:
        rows.append(("openpi (2 cameras at 224), openpi server", ms_per_step(url, "openpi", args.steps)))
    with tempfile.TemporaryDirectory() as directory:
        export = camera_export(Path(directory) / "export", size=256, chunk=None)
        in_process = ms_per_query(lambda: OnnxPolicy(load_manifest(export), intra_op_threads=0), args.steps)
        rows.append(("one 256x256-camera export, in-process", in_process))
        server, url = served_export(export)
        try:
            rows.append(("the same export, through pytest-vla serve", ms_per_step(url, "vla-eval", args.steps)))
        finally:
            server.terminate()
            server.wait()
    print(f"{'protocol, server':<46} {'median ms/query':>16} {'p95 ms/query':>13}")
    for name, (median, p95) in rows:
        print(f"{name:<46} {median:>16.2f} {p95:>13.2f}")
    print(f"added by serving, per query (median): {rows[-1][1][0] - rows[-2][1][0]:.2f} ms")


if __name__ == "__main__":
    main()
