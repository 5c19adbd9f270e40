"""Ctrl-C and SIGTERM stop a run between two simulator steps, never inside one.

A KeyboardInterrupt raised inside robosuite or LIBERO leaves them half torn down: LIBERO's reset
swallows it and retries forever, and a half-freed simulator breaks pytest's own interrupt report.
So while an episode runs, the first signal is only noted, and the episode loop raises it at its
next step; a second signal, or one outside an episode, interrupts at once.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

_state = {"in_episode": False, "requested": None}


def install() -> None:
    """Handle SIGINT and SIGTERM this way in this process (main thread only)."""
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, _on_signal)


def _on_signal(signum: int, frame: Any) -> None:
    name = signal.Signals(signum).name
    if not _state["in_episode"] or _state["requested"] is not None:
        raise KeyboardInterrupt(name)
    _state["requested"] = name


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Within: a first signal waits for :func:`check`."""
    _state["in_episode"] = True
    try:
        yield
    finally:
        _state["in_episode"] = False


def check() -> None:
    """Raise the KeyboardInterrupt a signal asked for, at this safe point."""
    name = _state["requested"]
    if name is not None:
        _state["requested"] = None
        raise KeyboardInterrupt(f"{name}: stopped between two simulator steps")
