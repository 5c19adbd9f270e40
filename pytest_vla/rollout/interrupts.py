"""Ctrl-C and SIGTERM stop a run between two simulator steps, never inside one.

A KeyboardInterrupt raised inside robosuite or LIBERO leaves them half torn down: LIBERO's reset
swallows it and retries forever, and a half-freed simulator breaks pytest's own interrupt report.
So while an episode runs, the first signal is only noted: the episode loop raises it at its next
step, and one that arrived where no step follows (the env build, the last step) is raised once
the episode's row has been reported. While the run's end is written (report.json, the summary), a
first signal waits too, and the run then exits as interrupted. A second signal, or one outside an
episode or the run's end, interrupts at once.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _State:
    in_episode = False
    requested: str | None = None
    previous: dict[int, Any] = {}  # noqa: RUF012 (one process-wide state)


def install() -> None:
    """Handle SIGINT and SIGTERM this way in this process (main thread only)."""
    if threading.current_thread() is threading.main_thread():
        for signum in _SIGNALS:
            _State.previous.setdefault(signum, signal.signal(signum, _on_signal))


def uninstall() -> None:
    """Give the signals back to whoever had them (in-process pytest runs must not keep ours)."""
    if threading.current_thread() is threading.main_thread():
        for signum, handler in _State.previous.items():
            signal.signal(signum, handler)
    _State.previous.clear()
    _State.in_episode, _State.requested = False, None


def _on_signal(signum: int, frame: FrameType | None) -> None:
    name = signal.Signals(signum).name
    if not _State.in_episode or _State.requested is not None:
        raise KeyboardInterrupt(name)
    _State.requested = name


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """Within: a first signal waits for :func:`check` or :func:`raise_pending`."""
    _State.in_episode = True
    try:
        yield
    finally:
        _State.in_episode = False


def check() -> None:
    """Raise the KeyboardInterrupt a signal asked for, at this safe point."""
    name = _State.requested
    if name is not None:
        _State.requested = None
        raise KeyboardInterrupt(f"{name}: stopped between two simulator steps")


def raise_pending() -> None:
    """After an episode's row is out: a signal that came when no step followed stops the run now."""
    name = _State.requested
    if name is not None:
        _State.requested = None
        raise KeyboardInterrupt(f"{name}: stopped after the episode")


def take_pending() -> str | None:
    """The signal that came within :func:`deferred` and was not raised (None if none); forgotten after."""
    name, _State.requested = _State.requested, None
    return name
