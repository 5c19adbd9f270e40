"""``pytest-vla serve``: an ONNX export behind vla-eval protocol v1, the observations of several clients batched.

One onnxruntime session per process; each connection keeps its own episode (and, for a vla-eval client,
the rest of its action chunk). Every frame a client sends is checked: a bad one is answered with an
error frame carrying its seq, and the connection stays open.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
from collections import deque
from collections.abc import Callable, Mapping
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import msgpack
import numpy as np
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from pytest_vla.errors import PolicyError, one_line, printable
from pytest_vla.export.manifest import load_manifest
from pytest_vla.policy.onnx import EpisodeContext, OnnxPolicy, action_chunk
from pytest_vla.policy.wire import MAX_FRAME_BYTES, Frame, WireError, pack_frame, unpack_frame
from pytest_vla.serve.batching import Batcher, BatchStats
from pytest_vla.serve.model import BatchedModel, Feed, Signature
from pytest_vla.serve.protocol import (
    ServedExport,
    client_mode,
    plain_episode,
    plain_observation,
    pytest_vla_episode,
    pytest_vla_observation,
)

logger = logging.getLogger("pytest_vla.serve")
# websockets logs a failed opening handshake (a port scanner, a plain HTTP client) at ERROR with a traceback.
_WEBSOCKETS_LOGGER = logging.getLogger("pytest_vla.serve.websockets")
_WEBSOCKETS_LOGGER.setLevel(logging.CRITICAL)

STATS_INTERVAL_S = 60.0  # how often the batch statistics are logged
SHUTDOWN_REPLY_S = 10.0  # how long a shutdown waits for answered requests' replies to be sent


class _Client:
    """One connection: which kind of client, its episode, and (a vla-eval client's) actions not yet sent."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.pytest_vla = False
        self.episode: EpisodeContext | None = None
        self.actions: deque[np.ndarray] = deque()
        self.observations = 0

    def end_episode(self) -> None:
        self.episode = None
        self.actions.clear()


class PolicyServer:
    """The export loaded (listening starts only after), served by :meth:`serve` until :meth:`stop`."""

    def __init__(
        self,
        export_dir: Path,
        *,
        host: str = "127.0.0.1",
        port: int = 8000,
        max_batch_size: int = 1,
        max_wait_ms: float = 10.0,
        stats_interval_s: float = STATS_INTERVAL_S,
    ) -> None:
        self.export_dir = export_dir
        self.policy = OnnxPolicy(load_manifest(export_dir))
        self.export = ServedExport.of(self.policy)
        self.model = BatchedModel(self.policy)
        self.host, self.port = host, port
        if max_batch_size > 1 and self.model.unbatched_because is not None:
            self.batching = f"off: {self.model.unbatched_because}"
            max_batch_size = 1
        elif max_batch_size == 1:
            self.batching = "off: --max-batch-size 1"
        else:
            self.batching = f"on: up to {max_batch_size} observations per call, waiting at most {max_wait_ms:g} ms"
        self.max_batch_size, self.max_wait_ms = max_batch_size, max_wait_ms
        self.stats_interval_s = stats_interval_s
        self.stats = BatchStats()  # since the start; the batcher's, once serving
        self._hello = self.export.hello(max_batch_size, max_wait_ms)
        self._plain_refusal = self.export.plain_refusal()
        self._stopping = False
        self._busy = 0  # frames being answered
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop = asyncio.Event()
        self._quiet = asyncio.Event()  # set when no frame is being answered

    async def serve(self, listening: Callable[[str], None] | None = None) -> None:
        """Serve until :meth:`stop`: then refuse new clients, answer the requests in flight, close and return."""
        self._loop = asyncio.get_running_loop()
        self._batcher = Batcher(self.model, self.max_batch_size, self.max_wait_ms / 1000)
        self.stats = self._batcher.total
        batching = asyncio.create_task(self._batcher.run())
        statistics = asyncio.create_task(self._log_statistics())
        async with serve(
            self._handle,
            self.host,
            self.port,
            process_request=self._http,
            compression=None,
            max_size=MAX_FRAME_BYTES,
            max_queue=1,  # a connection holds at most the frame being answered and one more
            ping_interval=None,  # as vla-eval: its benchmarks step the simulator in the loop that would answer pings
            logger=_WEBSOCKETS_LOGGER,
        ) as server:
            port = server.sockets[0].getsockname()[1]
            url = f"ws://{f'[{self.host}]' if ':' in self.host else self.host}:{port}"
            logger.info(
                "serving %s with %s, batching %s, at %s",
                self.export_dir,
                self.policy.provider,
                printable(self.batching),
                url,
            )
            if listening is not None:
                listening(url)
            await self._stop.wait()
            logger.info("shutting down: no new clients; answering the requests in flight")
            self._stopping = True
            self._batcher.close()
            await batching
            if self._busy:
                self._quiet.clear()
                try:
                    await asyncio.wait_for(self._quiet.wait(), SHUTDOWN_REPLY_S)
                except asyncio.TimeoutError:
                    logger.info("shutting down with %d replies unsent", self._busy)
        statistics.cancel()
        logger.info("stopped; since the start: %s", self.stats.summary())

    def stop(self) -> None:
        """Make :meth:`serve` return (from any thread, or a signal handler); after it returned, do nothing."""
        if self._loop is None:
            return
        with contextlib.suppress(RuntimeError):  # its loop is closed: serve has returned, and a second stop is moot
            self._loop.call_soon_threadsafe(self._stop.set)

    def _http(self, connection: ServerConnection, request: Request) -> Response | None:
        """``GET /health`` (the readiness probe vla-eval's servers answer too); anything else opens a WebSocket."""
        if self._stopping:
            return connection.respond(HTTPStatus.SERVICE_UNAVAILABLE, "shutting down\n")
        if urlparse(request.path).path != "/health":
            return None
        response = connection.respond(HTTPStatus.OK, '{"status": "ok"}\n')
        del response.headers["Content-Type"]  # respond() sets text/plain; Headers would keep both
        response.headers["Content-Type"] = "application/json"
        return response

    async def _log_statistics(self) -> None:
        while True:
            await asyncio.sleep(self.stats_interval_s)
            interval, self._batcher.interval = self._batcher.interval, BatchStats()
            if interval.batches:
                logger.info("last %g s: %s", self.stats_interval_s, interval.summary())

    async def _handle(self, connection: ServerConnection) -> None:
        host, port, *_ = connection.remote_address
        client = _Client(f"{host}:{port}")
        self._batcher.clients += 1
        logger.info("client %s connected (%d connected)", client.name, self._batcher.clients)
        try:
            async for data in connection:
                self._busy += 1
                try:
                    reply = await self._answer(client, data)
                    if reply is not None:
                        await connection.send(pack_frame(reply))
                finally:
                    self._busy -= 1
                    if not self._busy:
                        self._quiet.set()
        except ConnectionClosed:
            pass
        finally:
            self._batcher.clients -= 1
            kind = "pytest-vla" if client.pytest_vla else "vla-eval"
            logger.info(
                "client %s (%s) disconnected after %d observations (%d connected)",
                client.name,
                kind,
                client.observations,
                self._batcher.clients,
            )

    async def _answer(self, client: _Client, data: bytes | str) -> Frame | None:
        """The reply to one frame (None for the frames v1 does not answer); an error frame for a bad one."""
        try:
            frame = await asyncio.to_thread(unpack_frame, data)
        except Exception as exc:  # WireError, or anything else a hostile frame provokes in decoding
            message = str(exc) if isinstance(exc, WireError) else one_line(exc)
            return _error(_seq_of(data), f"frame refused: {message}")
        try:
            return await self._dispatch(client, frame)
        except (WireError, PolicyError) as exc:
            message = str(exc)
        except Exception as exc:  # whatever a frame provokes, the server answers it and carries on
            message = one_line(exc)
        logger.debug("client %s: %s refused: %s", client.name, frame.type, message)
        return _error(frame.seq, f"{frame.type}: {message}")

    async def _dispatch(self, client: _Client, frame: Frame) -> Frame | None:
        if frame.type == "hello":
            client.pytest_vla = client_mode(frame.payload)
            client.end_episode()
            return Frame("hello", self._hello, frame.seq)
        if frame.type == "episode_start":
            client.end_episode()
            if client.pytest_vla:
                client.episode = pytest_vla_episode(frame.payload)
            else:
                self._check_plain()
                client.episode = plain_episode(frame.payload)
            return None
        if frame.type == "episode_end":
            client.end_episode()
            return None
        if frame.type == "observation":
            client.observations += 1
            return Frame("action", await self._act(client, frame.payload), frame.seq)
        if frame.type == "error":
            logger.debug("client %s reports an error: %s", client.name, frame.payload)
            return None
        raise WireError("a client sends no action frames: actions come from the server")

    def _check_plain(self) -> None:
        if self._plain_refusal is not None:
            raise PolicyError(self._plain_refusal)

    async def _act(self, client: _Client, payload: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """pytest-vla's client gets the whole chunk; vla-eval's one action per observation, from the chunk.

        Every observation is checked, also one a vla-eval client is answered from its chunk for.
        """
        if not client.pytest_vla:
            self._check_plain()
        episode = client.episode
        if episode is None:
            raise PolicyError("no episode: an observation comes after episode_start")
        prepared = await asyncio.to_thread(self._prepare, client, payload, episode)
        if prepared is None:
            return {"actions": client.actions.popleft()}
        output = await self._batcher.submit(*prepared)
        episode.query += 1  # as OnnxPolicy.act counts: every model call, whatever its output
        chunk = action_chunk(output, self.policy.manifest.action)
        if client.pytest_vla:
            return {"actions": chunk}
        actions = chunk.astype(np.float32)
        client.actions.extend(actions[1:])
        return {"actions": actions[0]}

    def _prepare(
        self, client: _Client, payload: Mapping[str, Any], episode: EpisodeContext
    ) -> tuple[Feed, Signature] | None:
        """The model's feed for the observation, or None when the client's chunk has an action left.

        The feed is built and checked either way: an observation the model could not take is refused also
        when an action is left. Off the event loop: images are resized here.
        """
        if client.pytest_vla:
            observation = pytest_vla_observation(payload, self.export)
        else:
            observation, instruction = plain_observation(payload, self.export)
            if instruction is not None and instruction != episode.task.instruction:
                episode.task = dataclasses.replace(episode.task, instruction=instruction)
        feed = self.policy.feed(observation, episode)
        signature = self.model.signature(feed)
        return None if client.actions else (feed, signature)


def _seq_of(data: bytes | str) -> int:
    """The seq of a frame refused whole (an image that does not decode, say), if it has one; else 0."""
    try:
        raw = msgpack.unpackb(data, raw=False, strict_map_key=False) if isinstance(data, bytes) else None
    except Exception:  # msgpack raises several unrelated types for malformed bytes
        return 0
    seq = raw.get("seq") if isinstance(raw, dict) else None
    return seq if isinstance(seq, int) and not isinstance(seq, bool) else 0


def _error(seq: int, message: str) -> Frame:
    return Frame("error", {"error": printable(" ".join(message.split()))}, seq)
