"""``pytest-vla serve``'s throughput with 1, 2 and 4 clients at once, unbatched and batched, on a small model.

Run from the repository root, on a machine doing nothing else:
``.venv/bin/python benchmarks/serve_batching.py [--seconds 5] [--size 224]``.

The model is ``tests/models.py``'s linear policy on one ``SIZE`` x ``SIZE`` camera and the state, with a
dynamic batch and a chunk of one action, so every observation is a model request. The server runs in this
process (its own event loop in a thread, onnxruntime on the CPU); each client is a process of its own that
sends pytest-vla's observations (raw 256x256 images, no PNG) as fast as the replies come, for ``--seconds``.
Per setting it prints requests per second over all clients, the batches' mean and largest size and the
mean milliseconds of a model call; then the largest absolute difference between any batched reply and
what in-process ``OnnxPolicy.act`` returns for the same observation and query (0.0: bit for bit).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pytest_vla.export.manifest import load_manifest
from pytest_vla.policy.onnx import OnnxPolicy
from pytest_vla.report.schema import TaskSpec
from pytest_vla.serve.batching import BatchStats
from pytest_vla.serve.server import PolicyServer
from pytest_vla.suites.base import Observation
from tests.models import camera_export

CLIENTS = (1, 2, 4)
BATCH_SIZES = (1, 4)
MAX_WAIT_MS = 5.0
POOL = 16  # observations each client cycles through
SEED = 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0, help="how long each setting runs")
    parser.add_argument("--size", type=int, default=224, help="side of the model's camera input")
    parser.add_argument("--client", type=int, help=argparse.SUPPRESS)  # a client process: its index
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--go", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client is not None:
        client(args.client, args.url, args.go, args.seconds, args.out)
        return
    with tempfile.TemporaryDirectory() as scratch:
        export = camera_export(Path(scratch) / "export", size=args.size, chunk=1, batch="batch")
        lines = [
            f"{os.cpu_count()} CPUs; linear policy on a {args.size}x{args.size} camera + state, dynamic batch, "
            f"a model request per observation; {args.seconds:g} s per setting; --max-wait-ms {MAX_WAIT_MS:g}.",
            "",
            "| --max-batch-size | clients | requests/s | mean batch | largest batch | model ms per call |",
            "|---|---|---|---|---|---|",
        ]
        largest_difference = 0.0
        for batch_size in BATCH_SIZES:
            for clients in CLIENTS:
                rate, stats, replies = run(export, batch_size, clients, args.seconds, Path(scratch))
                lines.append(
                    f"| {batch_size} | {clients} | {rate:.0f} | {stats.requests / stats.batches:.2f} | "
                    f"{stats.largest} | {1000 * stats.model_s / stats.batches:.2f} |"
                )
                if batch_size > 1:
                    largest_difference = max(largest_difference, difference(export, replies))
        lines += ["", f"largest |batched - in-process| over every batched reply: {largest_difference:g}"]
        print("\n".join(lines))


def run(
    export: Path, batch_size: int, clients: int, seconds: float, scratch: Path
) -> tuple[float, BatchStats, list[np.ndarray]]:
    """Serve ``export``, run ``clients`` client processes together; requests/s, the server's stats, the replies."""
    server = PolicyServer(export, port=0, max_batch_size=batch_size, max_wait_ms=MAX_WAIT_MS)
    ready: queue.Queue[str] = queue.Queue()
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(ready.put)), daemon=True)
    thread.start()
    url = ready.get(timeout=60)
    go = scratch / "go"
    go.unlink(missing_ok=True)
    outs = [scratch / f"client{index}.npy" for index in range(clients)]
    processes = []
    for index, out in enumerate(outs):
        command = ["--client", str(index), "--url", url, "--go", str(go), "--out", str(out), "--seconds", str(seconds)]
        processes.append(subprocess.Popen([sys.executable, __file__, *command]))
    time.sleep(2.0)  # every client connected and waiting
    go.touch()
    for process in processes:
        assert process.wait(timeout=seconds + 60) == 0
    server.stop()
    thread.join(timeout=30)
    replies = [np.load(out) for out in outs]
    return sum(len(chunks) for chunks in replies) / seconds, server.stats, replies


def pool(index: int) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng([index, 1])
    return [(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8), rng.normal(size=8)) for _ in range(POOL)]


def task(index: int) -> TaskSpec:
    return TaskSpec("bench", index, "serve as many observations as you can", 0)


def client(index: int, url: str, go: Path, seconds: float, out: Path) -> None:
    """One pytest-vla client: hello, one episode, observations until ``seconds`` have passed since ``go``."""
    from dataclasses import asdict

    from websockets.sync.client import connect

    from pytest_vla.policy.wire import Frame, pack_frame, unpack_frame

    observations = pool(index)
    start = {"seed": SEED, "task": asdict(task(index)), "episode_index": 0}
    chunks = []
    with connect(url, compression=None, max_size=None) as socket:
        socket.send(pack_frame(Frame("hello", {"protocol_version": 1, "pytest_vla": 2}, 1)))
        socket.recv()
        socket.send(pack_frame(Frame("episode_start", {"task": {}, "pytest_vla": start}, 2)))
        while not go.exists():
            time.sleep(0.01)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            image, state = observations[len(chunks) % POOL]
            body = {"pytest_vla": {"images": {"agentview": image}, "state": state}}
            socket.send(pack_frame(Frame("observation", body, 3 + len(chunks))))
            reply = unpack_frame(socket.recv())
            assert reply.type == "action", reply.payload
            chunks.append(reply.payload["actions"])
    np.save(out, np.asarray(chunks))


def difference(export: Path, replies: list[np.ndarray]) -> float:
    """Largest absolute difference between the replies and in-process ``OnnxPolicy.act`` on the same queries."""
    policy = OnnxPolicy(load_manifest(export))
    largest = 0.0
    for index, chunks in enumerate(replies):
        observations = pool(index)
        policy.begin_episode(SEED, task(index), 0)
        for query, chunk in enumerate(chunks):
            image, state = observations[query % POOL]
            expected = policy.act(Observation(images={"agentview": image}, state=state))
            largest = max(largest, float(np.max(np.abs(chunk - expected))))
    return largest


if __name__ == "__main__":
    main()
