"""What a served policy is whatever its protocol: connected when ready, its server's identity, one line per failure."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from pytest_vla.errors import PolicyError, printable, short_repr
from pytest_vla.policy.served.transport import Endpoint, Socket, wait_ready
from pytest_vla.suites.base import ServedClient, Suite, TaskSpec

MAX_ANNOUNCEMENT_BYTES = 1024 * 1024  # a hello or metadata map; the largest real one is a few kB of specs
MAX_NESTING = 16
MAX_SERVER_TEXT = 300  # characters of a server's error message quoted
# Once a reconnection has waited the whole ready timeout in vain, later episodes wait this long: a server that
# is gone costs each remaining episode seconds, not the timeout again.
GONE_SERVER_WAIT_S = 5.0
# A server may stamp what it announces; a new stamp is not a new server.
VOLATILE_KEYS = frozenset({"timestamp"})


class ServedSession:
    """A policy server behind one websocket: opened once ready, reopened at an episode's start after a drop.

    Subclasses speak the protocol: :meth:`_handshake` reads the server's announcement (vla-eval's
    hello reply, openpi's metadata) from a new connection, :meth:`_client_for` makes the suite's
    client from the first one. Every :class:`PolicyError` leaving a public method starts with the
    server's URL.
    """

    protocol: str
    client: ServedClient  # what goes in each request, and what of each reply runs

    def __init__(self, where: Endpoint, suite: Suite, *, query_timeout_s: float, ready_timeout_s: float) -> None:
        self.where = where
        self.provider = f"{where.url} ({self.protocol})"
        self.query_timeout_s = query_timeout_s
        self.ready_timeout_s = ready_timeout_s
        self._socket: Socket | None = None
        self._server: dict[str, Any] | None = None  # the announcement at the first connection, as JSON
        self._gone = False  # the last reconnection failed
        with self._blamed():
            announcement = self._connect()
            try:
                self.client = self._client_for(suite, announcement)
            except BaseException:
                self.close()
                raise
        self.cameras = self.client.cameras
        self.state = self.client.state

    def _handshake(self, socket: Socket) -> dict[str, Any]:
        raise NotImplementedError

    def _client_for(self, suite: Suite, announcement: dict[str, Any]) -> ServedClient:
        raise NotImplementedError

    def identity(self) -> dict[str, Any]:
        return {"kind": "served", "protocol": self.protocol, "url": self.where.url, "server": self._server}

    def check(self, suite: Suite, tasks: Sequence[TaskSpec]) -> list[str]:
        return list(self.client.warnings)

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    @contextlib.contextmanager
    def _blamed(self) -> Iterator[None]:
        """A failure inside names the server: ``URL: what happened``."""
        try:
            yield
        except PolicyError as exc:
            raise PolicyError(f"{self.where.url}: {exc}") from None

    def _connect(self) -> dict[str, Any]:
        """Wait until the server is ready, connect and return its announcement; refuse a changed server."""
        wait_s = min(self.ready_timeout_s, GONE_SERVER_WAIT_S) if self._gone else self.ready_timeout_s
        deadline = time.monotonic() + wait_s
        wait_ready(self.where, self.protocol, deadline, wait_s)
        socket = Socket(self.where, deadline)
        try:
            announcement = self._handshake(socket)
            server = json_able({key: value for key, value in announcement.items() if key not in VOLATILE_KEYS})
            if self._server is not None and server != self._server:
                changed = sorted(key for key in {*server, *self._server} if server.get(key) != self._server.get(key))
                raise PolicyError(
                    f"the server changed since the run's first connection: its announcement differs in "
                    f"{short_repr(changed, 120)}"
                )
        except BaseException:
            socket.drop()
            raise
        self._server, self._socket = server, socket
        return announcement

    def _reconnect_if_dropped(self) -> None:
        if self._socket is None or not self._socket.is_open:
            self.close()
            try:
                self._connect()
            except PolicyError:
                self._gone = True
                raise
            self._gone = False

    def _live_socket(self) -> Socket:
        if self._socket is None or self._socket.dropped:
            raise PolicyError("the connection was dropped earlier in this episode (the next episode reconnects)")
        if not self._socket.is_open:
            raise PolicyError(f"the server closed the connection ({self._socket.how_closed()})")
        return self._socket


def announcement_of(data: bytes | str, what: str) -> bytes:
    """A hello or metadata message's bytes, refused when text or oversized."""
    if isinstance(data, str):
        raise PolicyError(f"{what} is a text frame: {server_text(data)}")
    if len(data) > MAX_ANNOUNCEMENT_BYTES:
        raise PolicyError(f"{what} is {len(data)} bytes, above the {MAX_ANNOUNCEMENT_BYTES} accepted")
    return data


def reply_actions(value: Any) -> np.ndarray:
    """A reply's actions as a float64 array: numeric (an array, or a flat list of numbers) and finite."""
    if isinstance(value, list) and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in value):
        value = np.array(value, dtype=np.float64)
    if not isinstance(value, np.ndarray):
        raise PolicyError(f"the server's actions are a {type(value).__name__}, not an array")
    if value.dtype.kind not in "iuf":
        raise PolicyError(f"the server's actions are of dtype {value.dtype}, not numbers")
    actions = value.astype(np.float64)
    finite = np.isfinite(actions)
    if not finite.all():
        raise PolicyError(f"the server's actions hold {actions.size - int(finite.sum())} non-finite values")
    return actions


def server_text(text: str) -> str:
    """A server's message quoted in one printable line, bounded."""
    line = printable(" ".join(text.split()))
    return line if len(line) <= MAX_SERVER_TEXT else line[: MAX_SERVER_TEXT - 3] + "..."


def json_able(value: Any, depth: int = 0) -> Any:
    """A decoded message as JSON for the report: arrays as lists; what JSON lacks (NaN, bytes) as text."""
    if depth > MAX_NESTING:
        raise PolicyError(f"the server's announcement is nested more than {MAX_NESTING} levels")
    if isinstance(value, dict):
        return {key if isinstance(key, str) else repr(key): json_able(item, depth + 1) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_able(item, depth + 1) for item in value]
    if isinstance(value, (np.ndarray, np.generic)):
        return json_able(value.tolist(), depth)
    if isinstance(value, float):
        return value if math.isfinite(value) else repr(value)
    if value is None or isinstance(value, (str, int)):
        return value
    return repr(value)  # bytes, msgpack extension types
