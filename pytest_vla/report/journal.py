"""``<output>/episodes.jsonl``: every finished episode's row, appended and flushed to disk as it comes.

report.json is rewritten every few seconds (``writer.REWRITE_EVERY_S``), so after a kill it may
lack the last episodes; the journal has them all. A row that a later attempt replaced
(pytest-rerunfailures, ``--lf``) simply appears again further down: readers take the last line of
each episode. ``--vla-resume`` reads report.json and then the journal's rows over it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from pytest_vla.errors import ReportError
from pytest_vla.report.reader import row_problems
from pytest_vla.report.schema import EpisodeRow


class Journal:
    """The run's journal, opened for appending at the first row (an earlier run's rows stay above)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._descriptor: int | None = None

    def append(self, row: EpisodeRow) -> None:
        """One line, on disk before this returns: the cost of an episode's record does not grow with the run."""
        if self._descriptor is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # O_NOFOLLOW: a journal planted as a link to another file is refused, not appended to.
            flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
            self._descriptor = os.open(self.path, flags, 0o666)
        data = memoryview((json.dumps(row, separators=(",", ":")) + "\n").encode("utf-8"))
        while data:
            data = data[os.write(self._descriptor, data) :]
        os.fsync(self._descriptor)

    def close(self) -> None:
        if self._descriptor is not None:
            os.close(self._descriptor)
            self._descriptor = None


def read_journal(path: Path) -> tuple[list[EpisodeRow], str | None]:
    """The journal's rows in the order written, and a line about a torn last row (a kill mid-write), if any.

    Any other line that is not a row refuses the file: it was not written by a run.
    """
    try:
        lines = path.read_bytes().split(b"\n")
    except OSError as exc:
        raise ReportError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    rows: list[EpisodeRow] = []
    torn: str | None = None
    last = len(lines) - 1  # after the final newline: empty unless the last write was cut short
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (UnicodeDecodeError, json.JSONDecodeError):
            row = None
        if row is not None and not row_problems(row):
            rows.append(row)
        elif number - 1 == last:
            torn = f"{path}: line {number} is an incomplete row (the run was killed writing it): ignored"
        else:
            why = row_problems(row)[0] if row is not None else "not JSON"
            raise ReportError(f"{path}: line {number} is not a pytest-vla episode row ({why})")
    return rows, torn
