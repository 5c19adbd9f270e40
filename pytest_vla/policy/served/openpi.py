"""An openpi websocket policy server as a policy, queried as openpi's own benchmark client queries it.

openpi's protocol (``openpi_client.websocket_client_policy``, ``serving/websocket_policy_server.py``):
the server sends its metadata first, then answers each msgpack request with a msgpack reply; a
failure is its traceback as a text frame, after which it closes the connection (1011). No episode
frames and no sequence numbers: one request is in flight at a time, and any doubt drops the connection.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from pytest_vla.errors import PolicyError, short_repr
from pytest_vla.policy.served.session import (
    ServedSession,
    announcement_of,
    reply_actions,
    server_text,
)
from pytest_vla.policy.served.transport import Endpoint, ReplyTimeout, Socket
from pytest_vla.policy.wire import WireError, pack_openpi, unpack_openpi
from pytest_vla.suites.base import Observation, ServedClient, Suite, TaskSpec

_VLA_EVAL_FRAME_KEYS = frozenset({"type", "payload", "seq", "timestamp"})


class OpenpiPolicy(ServedSession):
    protocol = "openpi"

    def __init__(self, where: Endpoint, suite: Suite, *, query_timeout_s: float, ready_timeout_s: float) -> None:
        super().__init__(where, suite, query_timeout_s=query_timeout_s, ready_timeout_s=ready_timeout_s)
        self._task: TaskSpec | None = None

    def _client_for(self, suite: Suite, metadata: dict[str, Any]) -> ServedClient:
        return suite.served_client(self.protocol, metadata)

    def _handshake(self, socket: Socket) -> dict[str, Any]:
        try:
            data = socket.recv(time.monotonic() + self.query_timeout_s, "metadata", self.query_timeout_s)
        except ReplyTimeout:
            raise PolicyError(
                f"another protocol: no metadata within {self.query_timeout_s:g} s of connecting; an openpi server "
                "sends it at once, a vla-eval server waits for a hello (--vla-policy-protocol vla-eval)"
            ) from None
        try:
            metadata = unpack_openpi(announcement_of(data, "the server's first message"))
        except WireError as exc:
            raise PolicyError(f"the server's metadata is malformed: {exc}") from None
        if not isinstance(metadata, dict):
            raise PolicyError(f"the server's metadata is {short_repr(metadata)}, not a map")
        if metadata.keys() >= _VLA_EVAL_FRAME_KEYS:
            raise PolicyError("another protocol: the server's first message is a vla-eval frame")
        return metadata

    def begin_episode(self, seed: int, task: TaskSpec, episode_index: int) -> None:
        with self._blamed():
            self._task = None
            self._reconnect_if_dropped()  # openpi has no episode frames: nothing is sent
            self._task = task

    def act(self, observation: Observation) -> np.ndarray:
        with self._blamed():
            if self._task is None:
                raise PolicyError("begin_episode() did not succeed before this query")
            socket = self._live_socket()
            socket.send(pack_openpi(self.client.observation(observation, self._task)))
            data = socket.recv(time.monotonic() + self.query_timeout_s, "reply", self.query_timeout_s)
            if isinstance(data, str):
                socket.drop()  # the server closes it after its traceback
                raise PolicyError(f"server error: {_last_line(data)} (the next episode reconnects)")
            try:
                reply = unpack_openpi(data)
            except WireError as exc:
                socket.drop()
                raise PolicyError(f"a malformed reply ({exc}): the connection is dropped") from None
            if not isinstance(reply, dict) or "actions" not in reply:
                what = f"keys {short_repr(sorted(map(str, reply)))}" if isinstance(reply, dict) else short_repr(reply)
                raise PolicyError(f"the server's reply has no actions ({what})")
            return self.client.actions(reply_actions(reply["actions"]))

    def end_episode(self, success: bool, n_steps: int) -> None:
        self._task = None


def _last_line(traceback: str) -> str:
    """A traceback's last line: the exception and its message."""
    lines = [line for line in traceback.splitlines() if line.strip()]
    return server_text(lines[-1] if lines else traceback)
