"""The connection to a policy server: its URL, readiness over HTTP, one websocket that is dropped on any doubt."""

from __future__ import annotations

import contextlib
import http.client
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from pytest_vla.errors import PolicyError, one_line, printable, short_repr
from pytest_vla.policy.wire import MAX_FRAME_BYTES

PROTOCOLS = ("vla-eval", "openpi")
HEALTH_PATHS = {"vla-eval": "/health", "openpi": "/healthz"}  # each server's readiness probe, on the websocket's port
# A gateway in front of a server that is still starting answers these: not yet, rather than not this.
NOT_YET = frozenset({502, 503, 504})
_POLL_S = 0.2
_CLOSE_TIMEOUT_S = 2.0
_HEALTH_BODY_BYTES = 4096


@dataclass(frozen=True)
class Endpoint:
    url: str
    host: str
    port: int
    secure: bool


def endpoint(url: str) -> Endpoint:
    """``url`` parsed; anything but a ``ws://`` or ``wss://`` URL with a host is refused in one line."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise PolicyError(f"{short_repr(url)}: not a URL: {exc}") from None
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise PolicyError(f"{short_repr(url)}: a policy server's URL is ws://HOST:PORT or wss://HOST:PORT")
    secure = parts.scheme == "wss"
    return Endpoint(url, parts.hostname, port or (443 if secure else 80), secure)


def wait_ready(where: Endpoint, protocol: str, deadline: float, timeout_s: float) -> None:
    """Poll the server's readiness path until it answers 200; refuse a server of another kind at once."""
    path = HEALTH_PATHS[protocol]
    last, accepted = "no attempt", False  # refused throughout: nothing is there, which is unreachable
    while (remaining := deadline - time.monotonic()) > 0:
        kind = http.client.HTTPSConnection if where.secure else http.client.HTTPConnection
        connection = kind(where.host, where.port, timeout=remaining)
        try:
            connection.connect()
            accepted = True
            status = _status(connection, path)
        except ConnectionRefusedError:
            last = "connection refused"
        except socket.gaierror as exc:
            raise PolicyError(f"unreachable: cannot resolve {where.host!r} ({printable(str(exc.strerror))})") from None
        except (OSError, http.client.HTTPException) as exc:
            last = f"GET {path}: {one_line(exc)}" if accepted else one_line(exc)
        else:
            if status == 200:
                return
            if status not in NOT_YET:
                (other,) = (name for name in PROTOCOLS if name != protocol)
                raise PolicyError(
                    f"another kind of server: GET {path} answered HTTP {status}, where {protocol} servers answer 200 "
                    f"(the {other} protocol's probe is GET {HEALTH_PATHS[other]})"
                )
            last = f"GET {path} answered HTTP {status}"
        finally:
            connection.close()
        time.sleep(min(_POLL_S, max(0.0, deadline - time.monotonic())))
    if not accepted:
        raise PolicyError(
            f"unreachable: nothing accepted a connection on {where.host}:{where.port} within {timeout_s:g} s ({last})"
        )
    raise PolicyError(f"not ready within {timeout_s:g} s: {last}")


def _status(connection: http.client.HTTPConnection, path: str) -> int:
    connection.request("GET", path)
    response = connection.getresponse()
    response.read(_HEALTH_BODY_BYTES)
    return response.status


class ReplyTimeout(PolicyError):
    """No message within the time allowed; the connection is dropped."""


class Socket:
    """One websocket to the server. Any failure drops it: a reply after that can never be read as another's."""

    def __init__(self, where: Endpoint, deadline: float) -> None:
        from websockets.sync.client import connect

        self.seq = 0  # the number of the last frame this client sent on it
        self.dropped = False  # by this client, rather than closed by the server
        self._closing = contextlib.ExitStack()  # websockets 17 wants a connection opened as a context manager
        try:
            self._ws: Any = self._closing.enter_context(
                connect(
                    where.url,
                    open_timeout=max(deadline - time.monotonic(), 0.1),
                    compression=None,
                    max_size=MAX_FRAME_BYTES,
                    ping_interval=None,  # a server compiling or loading a model may not answer pings for a while
                    close_timeout=_CLOSE_TIMEOUT_S,
                    proxy=None,  # as the readiness probe: straight to the server
                )
            )
        except Exception as exc:  # websockets and the socket layer raise several unrelated types
            raise PolicyError(f"cannot open the websocket: {one_line(exc)}") from None

    @property
    def is_open(self) -> bool:
        from websockets.protocol import State

        return self._ws.state is State.OPEN

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def send(self, data: bytes) -> None:
        self._guarded(lambda: self._ws.send(data), "sending")

    def recv(self, deadline: float, waiting_for: str, limit_s: float) -> bytes | str:
        """The next message before ``deadline`` (``limit_s`` after the request); none drops the connection."""
        try:
            return self._guarded(
                lambda: self._ws.recv(timeout=max(deadline - time.monotonic(), 0.0)), f"waiting for the {waiting_for}"
            )
        except TimeoutError:
            self.drop()
            raise ReplyTimeout(
                f"no {waiting_for} within {limit_s:g} s: the connection is dropped (the next episode reconnects)"
            ) from None

    def _guarded(self, operation: Callable[[], Any], doing: str) -> Any:
        from websockets.exceptions import ConnectionClosed

        try:
            return operation()
        except TimeoutError:
            raise
        except ConnectionClosed:
            self.drop()
            raise PolicyError(f"the server closed the connection while {doing} ({self.how_closed()})") from None
        except Exception as exc:
            self.drop()
            raise PolicyError(f"the connection failed while {doing}: {one_line(exc)}") from None

    def how_closed(self) -> str:
        code, reason = self._ws.close_code, self._ws.close_reason
        return "without a close frame" if code in (None, 1006) else f"code {code} {short_repr(reason, 80)}"

    def drop(self) -> None:
        """Abandon the connection at once: nothing the server still sends is read."""
        self.dropped = True
        with contextlib.suppress(OSError):
            self._ws.socket.shutdown(socket.SHUT_RDWR)
        self.close()

    def close(self) -> None:
        with contextlib.suppress(Exception):  # closing a connection that already failed raises what failed it
            self._closing.close()
