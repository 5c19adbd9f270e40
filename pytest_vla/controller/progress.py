"""What a person watching a long run sees: each episode's outcome with ``-v``, and a running tally.

Under xdist the dots say little about a run of hours; a tally line (done of total, successes, an
ETA from the pace so far) appears at most every PROGRESS_EVERY_S seconds.
"""

from __future__ import annotations

import time
from typing import Any

from pytest_vla.report.schema import EpisodeRow
from pytest_vla.report.summary import duration_text

PROGRESS_EVERY_S = 30.0
_WORDS = {
    ("call", "passed"): ("passed", ".", "PASSED"),
    ("call", "failed"): ("failed", "F", "FAILED"),
    ("setup", "failed"): ("error", "E", "ERROR"),  # a harness error: the episode runs in setup
}
_MARKUP = {"passed": {"green": True}, "failed": {"red": True}, "error": {"red": True}}


class Progress:
    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self.successes = 0
        self._started = self._shown = time.monotonic()

    def finished(self, row: EpisodeRow) -> str | None:
        """Count one finished episode; the tally line when one is due."""
        self.done += 1
        self.successes += row["success"]
        now = time.monotonic()
        if now - self._shown < PROGRESS_EVERY_S and self.done < self.total:
            return None
        self._shown = now
        rate = f"{100 * self.successes / self.done:.1f}%"
        left = self.total - self.done
        eta = f", ETA {duration_text((now - self._started) / self.done * left)}" if left > 0 else ""
        return f"vla: {self.done}/{self.total} episodes done, {self.successes} succeeded ({rate}){eta}"


def episode_status(report: Any, row: EpisodeRow) -> tuple[str, str, tuple[str, dict[str, bool]]] | None:
    """``-v``'s word for an episode's report, with its terminal reason, steps and time; None: pytest's own."""
    words = _WORDS.get((report.when, report.outcome))
    if words is None or getattr(report, "wasxfail", None) is not None:
        return None  # xfail, skips and reruns keep the words their plugins give them
    category, letter, word = words
    detail = f"{word} ({row['terminal_reason']}, {row['n_steps']} steps, {row['wall_clock_s']:.1f} s)"
    return category, letter, (detail, _MARKUP[category])
