"""Dynamic batching: requests pending from several connections run as one model call in one worker thread."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from pytest_vla.errors import PolicyError, one_line
from pytest_vla.serve.model import BatchedModel, Feed, Signature


@dataclass
class BatchStats:
    """Counts of model calls: since the server started, or over one logging interval."""

    requests: int = 0
    batches: int = 0
    largest: int = 0
    model_s: float = 0.0
    sizes: dict[int, int] = field(default_factory=dict)  # batch size -> how many batches had it

    def add(self, size: int, seconds: float) -> None:
        self.requests += size
        self.batches += 1
        self.largest = max(self.largest, size)
        self.model_s += seconds
        self.sizes[size] = self.sizes.get(size, 0) + 1

    def summary(self) -> str:
        if not self.batches:
            return "no requests"
        return (
            f"{self.requests} requests in {self.batches} batches (mean size {self.requests / self.batches:.2f}, "
            f"max {self.largest}), model {1000 * self.model_s / self.batches:.2f} ms mean per batch"
        )


@dataclass
class _Request:
    feed: Feed
    signature: Signature
    arrived: float  # loop time
    reply: asyncio.Future[np.ndarray]


class Batcher:
    """Collects the requests of every connection; each model call takes up to ``max_batch_size`` of them.

    A call waits for its batch to fill for at most ``max_wait_s`` after its oldest request arrived, and not
    at all once every connected client has a request pending (none could add one). Requests stack only
    with requests of the same shapes; the others wait for a later call. Each connection has at most one
    request pending (it waits for its reply), so what is pending is bounded by the connections.
    """

    def __init__(self, model: BatchedModel, max_batch_size: int, max_wait_s: float) -> None:
        self.model = model
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.clients = 0  # connected clients, kept by the server
        self.total = BatchStats()
        self.interval = BatchStats()
        self._pending: deque[_Request] = deque()
        self._arrived = asyncio.Event()
        self._closing = False
        # One thread: onnxruntime's session runs one call at a time, and uses its own threads within it.
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pytest-vla-model")

    async def submit(self, feed: Feed, signature: Signature) -> np.ndarray:
        """The model's raw output for ``feed`` (first dimension 1); :class:`PolicyError` if the call failed."""
        if self._closing:
            raise PolicyError("the server is shutting down")
        loop = asyncio.get_running_loop()
        request = _Request(feed, signature, loop.time(), loop.create_future())
        self._pending.append(request)
        self._arrived.set()
        return await request.reply

    def close(self) -> None:
        """Accept no more requests; :meth:`run` returns once those pending have been answered."""
        self._closing = True
        self._arrived.set()

    async def run(self) -> None:
        """Call the model until closed and drained."""
        loop = asyncio.get_running_loop()
        try:
            while self._pending or not self._closing:
                if not self._pending:
                    self._arrived.clear()
                    await self._arrived.wait()
                    continue
                await self._fill(loop)
                batch = self._take()
                if batch:
                    await self._call(loop, batch)
        finally:
            self._worker.shutdown(wait=True)

    async def _fill(self, loop: asyncio.AbstractEventLoop) -> None:
        deadline = self._pending[0].arrived + self.max_wait_s
        while not self._closing and self._stackable() < min(self.max_batch_size, self.clients):
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except asyncio.TimeoutError:
                return

    def _stackable(self) -> int:
        first = self._pending[0].signature
        return sum(request.signature == first for request in self._pending)

    def _take(self) -> list[_Request]:
        """Up to ``max_batch_size`` pending requests stacking with the oldest, oldest first."""
        first = self._pending[0].signature
        batch, kept = [], deque()
        for request in self._pending:
            if request.reply.done():  # its connection went away
                continue
            if request.signature == first and len(batch) < self.max_batch_size:
                batch.append(request)
            else:
                kept.append(request)
        self._pending = kept
        return batch

    async def _call(self, loop: asyncio.AbstractEventLoop, batch: list[_Request]) -> None:
        started = time.perf_counter()
        try:
            outputs = await loop.run_in_executor(self._worker, self.model.run, [request.feed for request in batch])
        except Exception as exc:  # onnxruntime raises several unrelated types
            error = exc if isinstance(exc, PolicyError) else PolicyError(f"the model failed: {one_line(exc)}")
            for request in batch:
                if not request.reply.done():
                    request.reply.set_exception(error)
            return
        seconds = time.perf_counter() - started
        self.total.add(len(batch), seconds)
        self.interval.add(len(batch), seconds)
        for request, output in zip(batch, outputs, strict=True):
            if not request.reply.done():
                request.reply.set_result(output)
