"""Ends a process stuck in native code (the simulator, OSMesa, the model) past its wall-clock limit.

An episode that is merely slow is ended cooperatively by the episode loop (a ``timeout`` row); this
is for the loop that never gets control back. Before the process exits with :data:`WATCHDOG_EXIT`
the watchdog leaves a note (what was stuck, and the limit) where the controller finds it: under
xdist the controller turns it into the episode's row, the worker is replaced and the run goes on;
without xdist the run ends, and report.json keeps every finished episode (``partial``).
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

WATCHDOG_EXIT = 70
GRACE_S = 10.0  # beyond the limit: the loop's cooperative check gets its chance first


@dataclass(frozen=True)
class Stuck:
    """What the watchdog ended the process for."""

    phase: str  # "env_build" or "episode"
    what: str  # e.g. "building the env of libero_object:3"
    limit_s: float

    @property
    def message(self) -> str:
        return f"pytest-vla watchdog: {self.what} is stuck past its {self.limit_s:g} s limit; ending this process"


def note_path(output: Path, worker: str) -> Path:
    return output / ".vla-watchdog" / f"{worker}.json"


def read_note(output: Path, worker: str) -> Stuck | None:
    """The note a worker's watchdog left before ending it, if any (removed once read)."""
    path = note_path(output, worker)
    try:
        note = Stuck(**json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None
    path.unlink(missing_ok=True)
    return note


class Watchdog:
    def __init__(self, note: Path, announce: Callable[[str], None]) -> None:
        self._note = note
        self._announce = announce  # tells the person at the terminal, past pytest's output capture
        self._stuck: Stuck | None = None
        self._deadline: float | None = None
        self._thread: threading.Thread | None = None

    def arm(self, phase: str, what: str, limit_s: float) -> None:
        self._stuck = Stuck(phase, what, limit_s)
        self._deadline = time.monotonic() + limit_s + GRACE_S
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="pytest-vla-watchdog", daemon=True)
            self._thread.start()

    def disarm(self) -> None:
        self._deadline = None

    def _watch(self) -> None:
        while True:
            time.sleep(0.25)
            deadline, stuck = self._deadline, self._stuck
            if deadline is not None and stuck is not None and time.monotonic() > deadline:
                try:
                    self._note.parent.mkdir(parents=True, exist_ok=True)
                    self._note.write_text(json.dumps(asdict(stuck)), encoding="utf-8")
                    self._announce(stuck.message)
                finally:
                    os._exit(WATCHDOG_EXIT)
