"""Ends a process stuck in native code (the simulator, OSMesa, the model) past its wall-clock limit.

An episode that is merely slow is ended cooperatively by the episode loop (a ``timeout`` row); this
is for the loop that never gets control back. Before the process exits with :data:`WATCHDOG_EXIT`
the watchdog leaves a note (what was stuck, and the limit) where the controller finds it: under
xdist the controller turns it into the episode's row, the worker is replaced and the run goes on;
without xdist the run ends, and the journal keeps every finished episode (``--vla-resume`` continues).

A note names its run and process: the controller empties the notes' directory when a run starts and
ignores a note of another run, so an earlier run's note never labels a later crash a timeout.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from pytest_vla.report.layout import OutputLayout
from pytest_vla.report.writer import write_text_atomically

WATCHDOG_EXIT = 70
GRACE_S = 10.0  # beyond the limit: the loop's cooperative check gets its chance first


@dataclass(frozen=True)
class Stuck:
    """What the watchdog ended the process for."""

    phase: str  # "env_build" or "episode"
    what: str  # e.g. "building the env of libero_object:3"
    limit_s: float
    run_id: str  # the plan's: a note of another run is not about this one
    pid: int  # the process the watchdog ended

    @property
    def message(self) -> str:
        return f"pytest-vla watchdog: {self.what} is stuck past its {self.limit_s:g} s limit; ending this process"


def read_note(layout: OutputLayout, worker: str, run_id: str) -> Stuck | None:
    """The note this run's worker's watchdog left before ending it, if any (removed once read)."""
    path = layout.watchdog_note(worker)
    try:
        note = Stuck(**json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError, TypeError):
        return None
    path.unlink(missing_ok=True)
    return note if note.run_id == run_id else None


def clear_notes(layout: OutputLayout) -> None:
    """Drop the notes an earlier run left (its controller may have died before reading them)."""
    if not layout.watchdog.is_dir():
        return
    for path in layout.watchdog.iterdir():
        if path.suffix == ".json":
            path.unlink(missing_ok=True)


class Watchdog:
    def __init__(self, note: Path, announce: Callable[[str], None], run_id: str) -> None:
        self._note = note
        self._announce = announce  # tells the person at the terminal, past pytest's output capture
        self._run_id = run_id
        self._stuck: Stuck | None = None
        self._deadline: float | None = None
        self._thread: threading.Thread | None = None

    def arm(self, phase: str, what: str, limit_s: float) -> None:
        self._stuck = Stuck(phase, what, limit_s, self._run_id, os.getpid())
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
                    write_text_atomically(self._note, json.dumps(asdict(stuck)))  # never half a note
                    self._announce(stuck.message)
                finally:
                    os._exit(WATCHDOG_EXIT)
