"""Ends a process stuck in native code (the simulator, OSMesa, the model) past an episode's time limit.

An episode that is merely slow is ended cooperatively by the episode loop (a ``timeout`` row); this
is for the loop that never gets control back. The process exits with :data:`WATCHDOG_EXIT`, which
the controller reads as a wall-clock timeout: under xdist the worker is replaced and the run goes
on; without xdist the run ends, and report.json keeps every finished episode (``partial``).
"""

from __future__ import annotations

import os
import sys
import threading
import time

WATCHDOG_EXIT = 70
GRACE_S = 10.0  # beyond the episode's own limit: the loop's cooperative check gets its chance first


class Watchdog:
    def __init__(self) -> None:
        self._deadline: float | None = None
        self._what = ""
        self._thread: threading.Thread | None = None

    def arm(self, seconds: float, what: str) -> None:
        self._what = what
        self._deadline = time.monotonic() + seconds + GRACE_S
        if self._thread is None:
            self._thread = threading.Thread(target=self._watch, name="pytest-vla-watchdog", daemon=True)
            self._thread.start()

    def disarm(self) -> None:
        self._deadline = None

    def _watch(self) -> None:
        while True:
            time.sleep(0.25)
            deadline = self._deadline
            if deadline is not None and time.monotonic() > deadline:
                sys.stderr.write(f"pytest-vla: {self._what} is stuck past its wall-clock limit; ending this process\n")
                sys.stderr.flush()
                os._exit(WATCHDOG_EXIT)
