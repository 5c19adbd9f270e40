"""Policy servers for the served-policy tests: the real upstream ones with scripted models, and a hostile one.

``python -m tests.served_servers`` serves a :class:`ScriptedServer` through vla-eval and prints its
port: a server the tests can kill.
"""

from __future__ import annotations

import contextlib
import http
import socket
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from vla_eval import serve_background
from vla_eval.model_servers.predict import PredictModelServer
from websockets.sync.server import Server, ServerConnection, serve

from pytest_vla.policy.wire import Frame, pack_frame, unpack_frame
from pytest_vla.suites.base import Observation


class ScriptedServer(PredictModelServer):
    """A vla-eval model server whose k-th prediction (from 1) is ``actions(k)``; it records what it was sent.

    ``fail_at``: the predictions that raise instead; ``stall_at``: those that first sleep ``stall_s``.
    """

    def __init__(
        self,
        actions: Callable[[int], np.ndarray] = lambda k: np.full(7, float(k)),
        observation_params: dict[str, Any] | None = None,
        fail_at: tuple[int, ...] = (),
        stall_at: tuple[int, ...] = (),
        stall_s: float = 0.0,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.actions, self.observation_params = actions, observation_params or {}
        self.fail_at, self.stall_at, self.stall_s = fail_at, stall_at, stall_s
        self.observations: list[dict[str, Any]] = []
        self.sessions: list[str] = []  # each prediction's session: one per connection
        self.episode_starts: list[dict[str, Any]] = []
        self.episode_ends: list[dict[str, Any]] = []

    def predict(self, obs: dict[str, Any], ctx: Any) -> dict[str, Any]:
        self.observations.append(obs)
        self.sessions.append(ctx.session_id)
        k = len(self.observations)
        if k in self.stall_at:
            time.sleep(self.stall_s)
        if k in self.fail_at:
            raise ValueError(f"prediction {k} fails")
        return {"actions": self.actions(k)}

    async def on_episode_start(self, config: dict[str, Any], ctx: Any) -> None:
        self.episode_starts.append(config)
        await super().on_episode_start(config, ctx)

    async def on_episode_end(self, result: dict[str, Any], ctx: Any) -> None:
        self.episode_ends.append(result)
        await super().on_episode_end(result, ctx)

    def get_observation_params(self) -> dict[str, Any]:
        return dict(self.observation_params)


class ScriptedOpenpiPolicy:
    """An openpi ``BasePolicy`` answering chunks of ``horizon`` rows (row i of call k is k + i / 100)."""

    def __init__(self, horizon: int = 10, fail_at: tuple[int, ...] = ()) -> None:
        self.horizon, self.fail_at = horizon, fail_at
        self.requests: list[dict[str, Any]] = []

    def infer(self, obs: dict[str, Any]) -> dict[str, Any]:
        self.requests.append(obs)
        k = len(self.requests)
        if k in self.fail_at:
            raise ValueError(f"inference {k} fails")
        rows = k + np.arange(self.horizon) / 100
        return {"actions": np.repeat(rows[:, None], 7, axis=1)}

    def reset(self) -> None:
        pass


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def openpi_server(policy: Any, metadata: dict[str, Any] | None = None) -> Iterator[str]:
    """openpi's ``WebsocketPolicyServer`` on a free port, in a daemon thread; yields its URL once healthy."""
    from openpi_server import WebsocketPolicyServer

    port = free_port()
    server = WebsocketPolicyServer(policy, host="127.0.0.1", port=port, metadata=metadata)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    deadline = time.monotonic() + 10
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.02)
    yield f"ws://127.0.0.1:{port}"  # the thread dies with the test process: openpi's server has no shutdown


@contextlib.contextmanager
def hostile_server(handler: Callable[[ServerConnection], None]) -> Iterator[str]:
    """A websocket server whose every connection runs ``handler``; both readiness probes answer 200."""

    def healthy(connection: ServerConnection, request: Any) -> Any:
        if request.path in ("/health", "/healthz"):
            return connection.respond(http.HTTPStatus.OK, "OK\n")
        return None

    def run(connection: ServerConnection) -> None:
        with contextlib.suppress(Exception):
            handler(connection)

    server: Server = serve(run, "127.0.0.1", 0, process_request=healthy, compression=None, max_size=None)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"ws://127.0.0.1:{server.socket.getsockname()[1]}"
    finally:
        server.shutdown()
        thread.join(5)


def answer_hello(connection: ServerConnection, payload: dict[str, Any]) -> None:
    """Read the client's hello and answer it with ``payload``."""
    hello = unpack_frame(connection.recv())
    connection.send(pack_frame(Frame("hello", payload, hello.seq)))


VLA_EVAL_HELLO = {"harness_version": "0.8.0", "protocol_version": 1, "model_server": "Hostile", "capabilities": {}}


def libero_observation(seed: int = 0, size: int = 256) -> Observation:
    """A LIBERO-like observation without the simulator: raw renders (upside down), the eef pose, a controller pose."""
    rng = np.random.default_rng(seed)
    quat = rng.normal(size=4)
    quat /= np.linalg.norm(quat)
    quat[3] = -abs(quat[3])  # w < 0: the two quaternion conventions differ
    angle = rng.uniform(0, np.pi)
    orientation = np.array([[np.cos(angle), -np.sin(angle), 0.0], [np.sin(angle), np.cos(angle), 0.0], [0, 0, 1.0]])
    raw = {
        "agentview_image": rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
        "robot0_eye_in_hand_image": rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
        "robot0_eef_pos": rng.normal(size=3),
        "robot0_eef_quat": quat,
        "robot0_gripper_qpos": rng.normal(size=2) / 100,
        "robot0_joint_pos": rng.normal(size=7),
    }
    return Observation(
        images={"agentview": raw["agentview_image"][::-1, ::-1], "wrist": raw["robot0_eye_in_hand_image"][::-1, ::-1]},
        state=rng.normal(size=8),
        raw=raw,
        objects_of_interest=rng.normal(size=(2, 3)),
        controller_pose=(raw["robot0_eef_pos"] + 0.001, orientation),
    )


if __name__ == "__main__":
    handle = serve_background(ScriptedServer(), host="127.0.0.1", port=0)
    print(handle.port, flush=True)
    time.sleep(3600)
