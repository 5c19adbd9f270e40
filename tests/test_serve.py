"""``pytest-vla serve`` against vla-eval's own client and orchestrator, and pytest-vla's extension of the protocol."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import json
import logging
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import onnx
import pytest
import vla_eval
from onnx import TensorProto
from vla_eval.connection import Connection
from websockets.sync.client import ClientConnection, connect

from pytest_vla.cli import main
from pytest_vla.export import DEMO_EXPORT_DIR
from pytest_vla.export.manifest import load_manifest
from pytest_vla.policy.onnx import OnnxPolicy
from pytest_vla.policy.wire import Frame, pack_frame, unpack_frame
from pytest_vla.report.schema import TaskSpec
from pytest_vla.serve.server import PolicyServer
from pytest_vla.suites.base import Observation
from tests.models import camera_export, signature_policy, write_export
from tests.vla_eval_benchmarks import TOY_TASKS, ToyBenchmark, toy_observation

ROOT = Path(__file__).resolve().parents[1]
RNG = np.random.default_rng(3)
TASK = {"name": "pick up the soup and place it in the basket", "suite": "libero_object", "task_id": 2}
# TASK as the server takes a vla-eval client's task: its noise as in a pytest-vla run of seed 0.
SERVED_TASK = TaskSpec(TASK["suite"], TASK["task_id"], TASK["name"], 0)


@contextmanager
def serving(export: Path, **options: Any) -> Iterator[tuple[PolicyServer, str]]:
    """The server in a thread with its own event loop, on a free port; stopped (and checked stopped) after."""
    server = PolicyServer(export, port=0, **options)
    ready: queue.Queue[str] = queue.Queue()
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(ready.put)), daemon=True)
    thread.start()
    try:
        yield server, ready.get(timeout=30)
    finally:
        server.stop()
        thread.join(timeout=30)
        assert not thread.is_alive()


def libero_observation(rng: np.random.Generator = RNG) -> dict[str, Any]:
    """What vla-eval's LIBERO benchmark sends with send_state: upright 256x256 agentview, 8-D states."""
    return {
        "images": {"agentview": rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)},
        "states": rng.normal(size=8),
        "controller_states": rng.normal(size=8).astype(np.float32),
        "task_description": TASK["name"],
    }


def as_observation(sent: dict[str, Any]) -> Observation:
    return Observation(images=sent["images"], state=sent["states"])


def served_one_by_one(policy: OnnxPolicy, task: TaskSpec, episode: int, sent: list[dict[str, Any]]) -> list[np.ndarray]:
    """In-process OnnxPolicy's chunks, one action per observation as vla-eval's clients take them."""
    policy.begin_episode(0, task, episode)
    chunk: list[np.ndarray] = []
    actions = []
    for observation in sent:
        if not chunk:
            chunk = list(policy.act(as_observation(observation)))
        actions.append(chunk.pop(0).astype(np.float32))
    return actions


def act_all(url: str, episodes: list[tuple[dict[str, Any], list[dict[str, Any]]]]) -> list[list[np.ndarray]]:
    """vla-eval's Connection: each (episode_start task, observations) in turn; the actions of each."""

    async def run() -> list[list[np.ndarray]]:
        async with Connection(url, timeout=10) as connection:
            results = []
            for task, observations in episodes:
                await connection.start_episode({"task": task})
                results.append([(await connection.act(sent))["actions"] for sent in observations])
                await connection.end_episode({"metrics": {}, "steps": len(observations)})
            return results

    return anyio.run(run)


class RawClient:
    """Frames by hand, as pytest-vla's client sends them (and as no client should)."""

    def __init__(self, socket: ClientConnection) -> None:
        self.socket = socket
        self.seq = 0

    def send(self, kind: str, payload: dict[str, Any]) -> int:
        self.seq += 1
        self.socket.send(pack_frame(Frame(kind, payload, self.seq)))
        return self.seq

    def ask(self, kind: str, payload: dict[str, Any]) -> Frame:
        seq = self.send(kind, payload)
        reply = self.recv()
        assert reply.seq == seq
        return reply

    def recv(self) -> Frame:
        return unpack_frame(self.socket.recv(timeout=10))


@contextmanager
def raw_client(url: str) -> Iterator[RawClient]:
    with connect(url, compression=None, max_size=None) as socket:
        yield RawClient(socket)


def test_vla_eval_client_gets_the_in_process_chunk_one_action_at_a_time(tmp_path: Path) -> None:
    export = camera_export(tmp_path / "e", size=16, chunk=3, batch="batch")
    first = [libero_observation() for _ in range(7)]
    second = [libero_observation() for _ in range(2)]
    with serving(export) as (_, url):

        async def episodes() -> tuple[dict[str, Any], list[list[np.ndarray]]]:
            async with Connection(url, timeout=10) as connection:
                got = []
                # No episode_end: the second episode_start comes with two actions of the first chunk unsent.
                for index, observations in ((1, first[:1]), (2, second + first)):
                    await connection.start_episode({"task": {**TASK, "episode_idx": index}})
                    got.append([(await connection.act(sent))["actions"] for sent in observations])
                return connection.server_info, got

        info, got = anyio.run(episodes)
    assert info["observation_params"] == {"send_wrist_image": False, "send_state": True, "quat_no_antipodal": True}
    assert info["protocol_version"] == 1 and info["model_server"] == "pytest-vla serve"
    assert info["pytest_vla"]["cameras"] == ["agentview"] and info["pytest_vla"]["action_dim"] == 7
    policy = OnnxPolicy(load_manifest(export))
    # The export's digests, not where its files lie on the server.
    files = [{k: v for k, v in entry.items() if k != "path"} for entry in policy.identity()["export_files"]]
    assert info["pytest_vla"]["policy"] == {"kind": "onnx-export", "export_files": files}
    assert str(tmp_path) not in repr(info)
    expected = [
        served_one_by_one(policy, SERVED_TASK, 1, first[:1]),
        served_one_by_one(policy, SERVED_TASK, 2, second + first),
    ]
    for actions, wanted in zip(got, expected, strict=True):
        assert len(actions) == len(wanted)
        for action, want in zip(actions, wanted, strict=True):
            assert action.dtype == np.float32 and action.shape == (7,)
            np.testing.assert_array_equal(action, want)


def noisy_export(directory: Path) -> Path:
    """state + noise -> a (1, 2, 7) chunk that moves with each input: the noise of each query shows."""
    model = signature_policy(
        {"state": (TensorProto.FLOAT, [1, 8]), "noise": (TensorProto.FLOAT, [1, 4])}, output_shape=(1, 2, 7)
    )
    return write_export(directory, model, {"state": {"source": "state"}, "noise": {"source": "noise", "shape": [1, 4]}})


def test_noise_is_seeded_per_client_episode_and_query_as_in_process(tmp_path: Path) -> None:
    export = noisy_export(tmp_path / "e")
    sent = [libero_observation() for _ in range(4)]
    task = TaskSpec("libero_goal", 4, "open the drawer", 300)
    with serving(export) as (_, url):
        plain = act_all(url, [({**TASK, "episode_idx": 3}, sent)])[0]
        with raw_client(url) as client:
            assert "pytest_vla" in client.ask("hello", {"protocol_version": 1, "pytest_vla": 2}).payload
            start = {"seed": 7, "task": dataclasses.asdict(task), "episode_index": 5}
            client.send("episode_start", {"task": {"name": task.instruction, "key": task.key}, "pytest_vla": start})
            chunks = []
            for observation in sent:
                body = {"pytest_vla": {"images": {}, "state": observation["states"]}}
                chunks.append(client.ask("observation", body).payload["actions"])
    policy = OnnxPolicy(load_manifest(export))
    for action, want in zip(plain, served_one_by_one(policy, SERVED_TASK, 3, sent), strict=True):
        np.testing.assert_array_equal(action, want)
    policy.begin_episode(7, task, 5)
    for chunk, observation in zip(chunks, sent, strict=True):
        assert chunk.dtype == np.float64 and chunk.shape == (2, 7)
        np.testing.assert_array_equal(chunk, policy.act(as_observation(observation)))
    assert len({chunk.tobytes() for chunk in chunks}) == 4  # each query drew new noise


def demo_observation() -> dict[str, Any]:
    return {
        "images": {},
        "state": np.zeros(8),
        "raw": {
            "robot0_eef_pos": np.array([0.1, 0.0, 1.0]),
            "robot0_gripper_qpos": np.array([0.02, -0.02]),
            "robot0_gripper_qvel": np.zeros(2),
        },
        "objects_of_interest": np.array([[0.05, 0.1, 0.9], [0.2, -0.1, 0.9]]),
    }


def test_the_demo_export_serves_pytest_vla_clients_and_refuses_vla_eval_ones() -> None:
    task = TaskSpec("libero_object", 0, "pick up the alphabet soup and place it in the basket", 280)
    with serving(DEMO_EXPORT_DIR, max_batch_size=4) as (server, url):
        with raw_client(url) as client:
            hello = client.ask("hello", {"harness_version": "x", "protocol_version": 1, "pytest_vla": 2}).payload
            start = {"seed": 7, "task": dataclasses.asdict(task), "episode_index": 0}
            client.send("episode_start", {"task": {"name": task.instruction, "key": task.key}, "pytest_vla": start})
            reply = client.ask("observation", {"pytest_vla": demo_observation()})

        async def plain() -> tuple[str, str]:
            async with Connection(url, timeout=10) as connection:
                await connection.start_episode({"task": TASK})
                refused_start = (await connection.recv(timeout=10)).payload["error"]
                with pytest.raises(RuntimeError) as refused:
                    await connection.act(libero_observation())
                return refused_start, str(refused.value)

        refused_start, refused_observation = anyio.run(plain)
    extension = hello["pytest_vla"]
    assert extension["cameras"] == [] and extension["objects_of_interest"] is True
    assert extension["raw_keys"] == ["robot0_eef_pos", "robot0_gripper_qpos", "robot0_gripper_qvel"]
    assert extension["max_batch_size"] == 1  # the demo's inputs have a fixed batch of 1
    assert server.batching.startswith("off: input 'eef_pos' has shape [1, 3]")
    policy = OnnxPolicy(load_manifest(DEMO_EXPORT_DIR))
    policy.begin_episode(7, task, 0)
    body = demo_observation()
    observation = Observation(body["images"], body["state"], body["raw"], body["objects_of_interest"])
    np.testing.assert_array_equal(reply.payload["actions"], policy.act(observation))
    assert reply.type == "action" and reply.payload["actions"].shape == (1, 7)
    for message in (refused_start, refused_observation):
        assert "this export reads raw observation keys" in message and "objects_of_interest" in message


def test_bad_frames_are_answered_with_errors_and_the_connection_stays(tmp_path: Path) -> None:
    export = camera_export(tmp_path / "e", size=16, chunk=2)
    good = libero_observation()
    bad = {
        "images is missing": {k: v for k, v in good.items() if k != "images"},
        "images.agentview is missing": {**good, "images": {"wrist": good["images"]["agentview"]}},
        "images.agentview is a float32 array of shape [256, 256, 3]": {
            **good,
            "images": {"agentview": good["images"]["agentview"].astype(np.float32)},
        },
        "images.agentview is a uint8 array of shape [256, 256, 4]": {
            **good,
            "images": {"agentview": np.zeros((256, 256, 4), np.uint8)},
        },
        "states is a int64 array of shape [8]": {**good, "states": np.arange(8)},
        "model input 'state' takes float32 [1, 8]; this observation gives float32 [1, 3]": {
            **good,
            "states": np.zeros(3),
        },
        "task_description is 7, not a string": {**good, "task_description": 7},
    }

    async def plain(url: str) -> tuple[list[str], np.ndarray]:
        async with Connection(url, timeout=10) as connection:
            errors = []
            with pytest.raises(RuntimeError) as early:
                await connection.act(good)
            errors.append(str(early.value))
            await connection.start_episode({"task": TASK})
            first = (await connection.act(good))["actions"]
            for observation in bad.values():  # checked, though the chunk has an action left to answer with
                with pytest.raises(RuntimeError) as refused:
                    await connection.act(observation)
                errors.append(str(refused.value))
            return errors, np.stack([first, (await connection.act(good))["actions"]])

    with serving(export) as (_, url):
        errors, actions = anyio.run(plain, url)
        with raw_client(url) as client:
            client.socket.send(b"\xc1 not msgpack")
            garbage = client.recv()
            client.socket.send("a text frame")
            text = client.recv()
            png = {"__image__": True, "format": "png", "data": b"not a png", "shape": [2, 2, 3]}
            undecodable = client.ask("observation", {"images": {"agentview": png}})
            stray = client.ask("action", {"actions": np.zeros(7)})
            version = client.ask("hello", {"protocol_version": 1, "pytest_vla": 1})
            assert client.ask("hello", {"protocol_version": 1, "pytest_vla": 2}).type == "hello"
            task = {"family": "libero_object", "index": 0, "instruction": "x", "max_steps": 1, "extra": 1}
            start_seq = client.send("episode_start", {"pytest_vla": {"seed": 0, "task": task, "episode_index": 0}})
            unknown = client.recv()
            image = good["images"]["agentview"]
            after = client.ask("observation", {"pytest_vla": {"images": {"agentview": image}}})
    assert "observation: no episode: an observation comes after episode_start" in errors[0]
    for error, expected in zip(errors[1:], bad, strict=True):
        assert f"observation: {expected}" in error
    wanted = served_one_by_one(OnnxPolicy(load_manifest(export)), SERVED_TASK, 0, [good, good])
    np.testing.assert_array_equal(actions, np.stack(wanted))  # the second from the first chunk, as before
    assert (
        garbage.type == "error"
        and garbage.seq == 0
        and garbage.payload["error"].startswith("frame refused: not msgpack")
    )
    assert text.payload["error"] == "frame refused: a text frame where a binary one belongs: 'a text frame'"
    assert undecodable.payload["error"] == "frame refused: a png image does not decode (UnidentifiedImageError)"
    assert stray.payload["error"] == "action: a client sends no action frames: actions come from the server"
    assert version.payload["error"] == "hello: pytest_vla is 1; this server speaks 2"
    assert (
        unknown.seq == start_seq
        and unknown.payload["error"] == "episode_start: pytest_vla.task has unknown key 'extra'"
    )
    assert after.payload["error"] == "observation: no episode: an observation comes after episode_start"


def concurrently(url: str, clients: int, steps: int) -> tuple[list[list[dict[str, Any]]], list[list[np.ndarray]]]:
    """``clients`` vla-eval Connections at once, each one episode (its own episode_idx) of ``steps`` observations."""
    sent = [[libero_observation(np.random.default_rng([client, 9])) for _ in range(steps)] for client in range(clients)]
    got: list[list[np.ndarray]] = [[] for _ in range(clients)]

    async def one(client: int) -> None:
        async with Connection(url, timeout=10) as connection:
            await connection.start_episode({"task": {**TASK, "episode_idx": client}})
            for observation in sent[client]:
                got[client].append((await connection.act(observation))["actions"])

    async def run() -> None:
        async with anyio.create_task_group() as group:
            for client in range(clients):
                group.start_soon(one, client)

    anyio.run(run)
    return sent, got


def largest_difference(export: Path, sent: list[list[dict[str, Any]]], got: list[list[np.ndarray]]) -> float:
    policy = OnnxPolicy(load_manifest(export))
    return max(
        float(
            np.max(
                np.abs(np.asarray(actions) - np.asarray(served_one_by_one(policy, SERVED_TASK, client, observations)))
            )
        )
        for client, (observations, actions) in enumerate(zip(sent, got, strict=True))
    )


def test_four_clients_are_batched_into_one_model_call(tmp_path: Path) -> None:
    export = camera_export(tmp_path / "e", size=32, chunk=1, batch="batch")
    with serving(export, max_batch_size=4, max_wait_ms=1000) as (server, url):
        sent, got = concurrently(url, clients=4, steps=12)
    assert server.batching == "on: up to 4 observations per call, waiting at most 1000 ms"
    assert server.stats.requests == 48 and server.stats.largest == 4
    assert server.stats.batches < 48
    assert largest_difference(export, sent, got) == 0.0


def test_a_model_with_a_fixed_batch_of_one_is_served_unbatched(tmp_path: Path) -> None:
    export = camera_export(tmp_path / "e", size=32, chunk=1)
    with serving(export, max_batch_size=4, max_wait_ms=1000) as (server, url):
        sent, got = concurrently(url, clients=4, steps=3)
    assert server.batching == "off: input 'state' has shape [1, 8]: its first dimension is fixed"
    assert server.stats.requests == 12 and server.stats.largest == 1
    assert largest_difference(export, sent, got) == 0.0


def test_health_answers_json_and_statistics_are_logged_each_interval(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    export = camera_export(tmp_path / "e", size=16, chunk=1, batch="batch")
    caplog.set_level(logging.INFO, logger="pytest_vla.serve")
    with serving(export, max_batch_size=2, stats_interval_s=0.2) as (_, url):
        with urllib.request.urlopen(url.replace("ws://", "http://") + "/health", timeout=10) as response:
            status, kind, body = response.status, response.headers.get_all("Content-Type"), response.read()
        act_all(url, [(TASK, [libero_observation() for _ in range(3)])])
        waited = time.monotonic()
        while not any(record.getMessage().startswith("last 0.2 s:") for record in caplog.records):
            assert time.monotonic() - waited < 10
            time.sleep(0.05)
    assert (status, kind, json.loads(body)) == (200, ["application/json"], {"status": "ok"})
    lines = [record.getMessage() for record in caplog.records]
    assert lines[0].startswith(f"serving {export} with CPUExecutionProvider, batching on: up to 2 observations")
    assert lines[0].endswith(f"at {url}")
    assert any(re.fullmatch(r"client 127\.0\.0\.1:\d+ connected \(1 connected\)", line) for line in lines)
    assert any("(vla-eval) disconnected after 3 observations (0 connected)" in line for line in lines)
    interval = next(line for line in lines if line.startswith("last 0.2 s:"))
    assert re.fullmatch(
        r"last 0\.2 s: 3 requests in 3 batches \(mean size 1\.00, max 1\), model [\d.]+ ms mean per batch", interval
    )


def test_vla_eval_run_evaluates_the_served_export_end_to_end(tmp_path: Path) -> None:
    export = camera_export(tmp_path / "e", size=16, chunk=2, batch="batch")
    ToyBenchmark.built_with.clear()
    ToyBenchmark.actions.clear()
    config = {
        "benchmarks": [{"benchmark": "tests.vla_eval_benchmarks:ToyBenchmark", "episodes_per_task": 2, "params": {}}]
    }
    with serving(export, max_batch_size=2) as (_, url):
        (result,) = vla_eval.run(config, server_url=url, docker=False, no_save=True, output_dir=tmp_path / "out")
    assert result["num_errors"] == 0 and result["mean_success"] == 1.0
    assert ToyBenchmark.built_with == [{"send_state": True, "send_wrist_image": False, "quat_no_antipodal": True}]
    policy = OnnxPolicy(load_manifest(export))
    for task_id, name in enumerate(TOY_TASKS):
        for episode in range(2):
            got = [action for task, index, action in ToyBenchmark.actions if (task, index) == (task_id, episode)]
            sent = [toy_observation(task_id, episode, step) for step in range(len(got))]
            observations = [{"images": {"agentview": image}, "states": state} for image, state in sent]
            wanted = served_one_by_one(policy, TaskSpec("toy", task_id, name, 0), episode, observations)
            assert len(got) == 5
            np.testing.assert_array_equal(np.asarray(got), np.asarray(wanted))


def with_checkout() -> dict[str, str]:
    """The environment of a subprocess that imports this checkout's tests/ (the benchmarks vla-eval runs)."""
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def vla_eval_run(url: str, config: str, directory: Path) -> subprocess.CompletedProcess[str]:
    """``vla-eval run`` as a user runs it against a server: no container, nothing saved."""
    (directory / "eval.yaml").write_text(config)
    command = ["run", "--no-docker", "--no-save", "-c", "eval.yaml", "--server-url", url]
    return subprocess.run(
        [str(Path(sys.executable).parent / "vla-eval"), *command],
        cwd=directory,
        env=with_checkout(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_serve_command_runs_until_sigterm_and_exits_0(tmp_path: Path) -> None:
    export = camera_export(tmp_path / "e", size=16, chunk=2, batch="batch")
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "pytest-vla"), "serve", str(export), "--port", "0", "--max-batch-size", "2"],
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stderr is not None
        start = ""
        for _ in range(20):  # onnxruntime may warn first (on a GPU host, about its providers)
            start += server.stderr.readline()
            url = re.search(r"serving .* at (ws://127\.0\.0\.1:\d+)$", start.strip())
            if url:
                break
        assert url, start
        config = "benchmarks:\n  - benchmark: tests.vla_eval_benchmarks:ToyBenchmark\n    episodes_per_task: 1\n"
        evaluated = vla_eval_run(url.group(1), config, tmp_path)
        assert evaluated.returncode == 0, evaluated.stderr[-2000:]
        assert "ToyBenchmark: 100.0%" in evaluated.stdout
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=30) == 0
        log = start + server.stderr.read()
    finally:
        server.kill()
        server.wait()
    assert "Traceback" not in log
    assert "batching on: up to 2 observations per call, waiting at most 10 ms" in start
    assert re.search(r"client 127\.0\.0\.1:\d+ \(vla-eval\) disconnected after 10 observations", log)
    assert re.search(r"stopped; since the start: 6 requests in \d+ batches", log)


def test_the_serve_command_refuses_an_export_it_cannot_load(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", str(tmp_path / "missing")]) == 1
    assert capsys.readouterr().err == f"ERROR: export directory not found: {tmp_path / 'missing'}\n"
    with pytest.raises(SystemExit):
        main(["serve", "demo", "--max-batch-size", "0"])
    assert "--max-batch-size must be in 1..1024, got 0" in capsys.readouterr().err


@pytest.mark.libero
def test_vla_eval_s_own_libero_benchmark_runs_against_the_server(tmp_path: Path) -> None:
    """vla-eval's LIBERO benchmark (libero_object, 1 episode of 5 steps, OSMesa), with the wrist camera asked for."""
    export = camera_export(tmp_path / "e", size=32, camera="wrist", chunk=4, batch="batch")
    config = (
        "render: cpu\nbenchmarks:\n  - benchmark: tests.vla_eval_libero:TorchFreeLIBERO\n"
        "    episodes_per_task: 1\n    max_tasks: 1\n    max_steps: 5\n    params: {suite: libero_object, seed: 7}\n"
    )
    with serving(export) as (server, url):
        evaluated = vla_eval_run(url, config, tmp_path)
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    assert "Auto-configured from model server: send_wrist_image=True" in evaluated.stderr
    assert "ep0: FAIL (steps=5)" in evaluated.stderr  # 5 steps run; a random linear policy does not succeed
    assert "errored" not in evaluated.stdout
    assert server.stats.requests == 2  # 5 observations, a chunk of 4 each query


def test_a_stop_answers_the_request_in_flight_before_closing(tmp_path: Path) -> None:
    export = camera_export(tmp_path / "e", size=16, chunk=1, batch="batch")
    with serving(export, max_batch_size=2, max_wait_ms=5000) as (server, url):

        async def run() -> tuple[np.ndarray, float]:
            async with Connection(url, timeout=10) as idle, Connection(url, timeout=10) as asking:
                assert idle.is_connected
                await asking.start_episode({"task": TASK})
                started = time.monotonic()
                async with anyio.create_task_group() as group:
                    # The request waits for the idle client to fill its batch, until the stop.
                    group.start_soon(anyio.to_thread.run_sync, lambda: (time.sleep(0.5), server.stop()))
                    action = (await asking.act(libero_observation()))["actions"]
                return action, time.monotonic() - started

        action, waited = anyio.run(run)
    assert action.shape == (7,) and 0.4 < waited < 4
    assert server.stats.requests == 1


def test_a_stop_after_the_server_returned_does_nothing(tmp_path: Path) -> None:
    export = camera_export(tmp_path / "e", size=16, chunk=1, batch="batch")
    with serving(export) as (server, _):
        server.stop()
        deadline = time.monotonic() + 30
        while not server._loop.is_closed() and time.monotonic() < deadline:  # asyncio.run closes it on return
            time.sleep(0.01)
        assert server._loop.is_closed()
        server.stop()  # as a signal handler or a context manager's exit may, once more: no RuntimeError
    # serving() stops it a third time on the way out.


JUNK: list[Any] = [
    None,
    True,
    -1,
    2**63,
    1e308,
    "x" * 5000,
    b"\x00" * 10,
    [],
    [1, "a"],
    {},
    {"__ndarray__": True, "data": b"\x00" * 7, "dtype": "<f8", "shape": [1]},
    {"__image__": True, "format": "png", "data": b"not a png", "shape": [2, 2, 3]},
    {"__image__": True, "format": "gif", "data": b"", "shape": []},
    np.zeros((0, 3)),
    np.zeros((2, 2, 2, 2)),
    np.full(8, np.nan),
    np.zeros(8, np.complex64).view(np.float32),
    np.zeros((1, 1, 3), np.uint8),
    np.zeros((256, 256, 3), np.bool_),
]


def mutations(observation: dict[str, Any], rng: np.random.Generator, count: int) -> Iterator[dict[str, Any]]:
    """``observation`` with one key, at any depth, replaced by junk or dropped, ``count`` times."""
    paths = []

    def walk(value: Any, path: tuple[str, ...]) -> None:
        paths.append(path)
        if isinstance(value, dict):
            for key, inner in value.items():
                walk(inner, (*path, key))

    walk(observation, ())
    for _ in range(count):
        path = paths[rng.integers(len(paths))]
        mutated = copy.deepcopy(observation)
        parent = mutated
        for key in path[:-1]:
            parent = parent[key]
        junk = JUNK[rng.integers(len(JUNK))]
        if not path:
            yield {"junk": junk}
        elif rng.random() < 0.2:
            del parent[path[-1]]
            yield mutated
        else:
            parent[path[-1]] = junk
            yield mutated


def test_hostile_observations_get_error_frames_and_the_server_serves_on(tmp_path: Path) -> None:
    """Every reply to a mutated observation is an action or an error frame with its seq; good ones still work."""
    export = camera_export(tmp_path / "e", size=16, chunk=1, batch="batch")
    rng = np.random.default_rng(11)
    good = libero_observation()
    extension = {"pytest_vla": {"images": {"agentview": good["images"]["agentview"]}, "state": good["states"]}}
    task = TaskSpec("libero_object", 1, "pick", 280)
    start = {"seed": 0, "task": dataclasses.asdict(task), "episode_index": 0}
    kinds = set()
    with serving(export, max_batch_size=4, max_wait_ms=1) as (_, url):
        for hello, observation, episode in (
            ({"protocol_version": 1}, good, {"task": TASK}),
            ({"protocol_version": 1, "pytest_vla": 2}, extension, {"pytest_vla": start}),
        ):
            with raw_client(url) as client:
                client.ask("hello", hello)
                for payload in mutations(episode, rng, 20):
                    start_seq = client.send("episode_start", payload)
                    seq = client.send("observation", observation)
                    reply = client.recv()
                    if reply.seq == start_seq:  # episode_start is answered only when refused
                        assert reply.type == "error"
                        reply = client.recv()
                    assert reply.seq == seq and reply.type in ("action", "error")
                client.send("episode_start", episode)
                for payload in mutations(observation, rng, 150):
                    reply = client.ask("observation", payload)
                    kinds.add(reply.type)
                    assert reply.type in ("action", "error")
                    if reply.type == "error":
                        assert "\n" not in reply.payload["error"] and len(reply.payload["error"]) < 1000
                assert client.ask("observation", observation).type == "action"
    assert kinds == {"action", "error"}


def test_the_controller_state_comes_from_controller_states_and_needs_the_antipodal_quaternion(tmp_path: Path) -> None:
    model = camera_export(tmp_path / "model", size=16, chunk=1)  # only its model.onnx is reused
    image = {"source": "image", "camera": "agentview", "size": [16, 16], "layout": "NCHW", "dtype": "float32"}
    exports = {
        quaternion: write_export(
            tmp_path / quaternion,
            onnx.load(model / "model.onnx"),
            {"image": image, "state": {"source": "state", "from": "controller", "quaternion": quaternion}},
        )
        for quaternion in ("antipodal", "robosuite")
    }
    sent = [libero_observation() for _ in range(2)]
    with serving(exports["antipodal"]) as (_, url):
        got = act_all(url, [(TASK, sent)])[0]
    policy = OnnxPolicy(load_manifest(exports["antipodal"]))
    controller = [{**observation, "states": observation["controller_states"]} for observation in sent]
    np.testing.assert_array_equal(np.asarray(got), np.asarray(served_one_by_one(policy, SERVED_TASK, 0, controller)))
    with serving(exports["robosuite"]) as (_, url), pytest.raises(RuntimeError, match="antipodal one"):
        act_all(url, [(TASK, sent)])
