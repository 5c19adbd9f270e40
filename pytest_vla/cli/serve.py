"""``pytest-vla serve``: an export behind vla-eval protocol v1 until SIGTERM or Ctrl-C."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from typing import TYPE_CHECKING

from pytest_vla.errors import ExportError, printable
from pytest_vla.export import resolve_export

if TYPE_CHECKING:
    from pytest_vla.serve.server import PolicyServer


def serve_command(export: str, host: str, port: int, max_batch_size: int, max_wait_ms: float) -> int:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s pytest-vla serve: %(message)s", "%Y-%m-%d %H:%M:%S"))
    log = logging.getLogger("pytest_vla.serve")
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    from pytest_vla.serve.server import PolicyServer  # onnxruntime, numpy and websockets: only for this command

    try:
        server = PolicyServer(
            resolve_export(export), host=host, port=port, max_batch_size=max_batch_size, max_wait_ms=max_wait_ms
        )
    except ExportError as exc:
        return _fail(str(exc))
    try:
        asyncio.run(_serve_until_signalled(server))
    except OSError as exc:  # the address is taken, or not this host's
        return _fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    return 0


async def _serve_until_signalled(server: PolicyServer) -> None:
    """SIGTERM and Ctrl-C stop the server gracefully: in-flight requests are answered, the exit status is 0."""
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, server.stop)
    await server.serve()


def _fail(message: str) -> int:
    print(f"ERROR: {printable(message)}", file=sys.stderr)
    return 1
