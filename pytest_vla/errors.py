"""Every exception and warning pytest-vla raises, and the one-line form users see them in.

Each message is one line that names the culprit (a file and key, an option, a task), so a
broken export or setup is told in one ``ERROR:`` line, never a traceback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_vla.report.schema import TerminalReason


def one_line(exc: BaseException) -> str:
    """``Type: message`` with all whitespace collapsed, so a reason never spans lines."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def read_json(path: Path, error: type[Exception], **loads: Any) -> Any:
    """The JSON document at ``path``; an unreadable or malformed file raises ``error`` naming it."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise error(f"{path}: cannot be read: {exc.strerror or one_line(exc)}") from None
    try:
        return json.loads(text, **loads)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise error(f"{path}: not valid JSON: {exc}") from None


class VlaWarning(UserWarning):
    """Something an evaluation runs with but a user should know (e.g. a truncated instruction)."""


class ExportError(Exception):
    """An export that cannot be evaluated (manifest, model, statistics, reflex directory)."""


class StatsError(Exception):
    """Normalization statistics that are missing or unusable; the manifest reader adds where they were asked for."""


class PolicyError(Exception):
    """The policy produced something the harness cannot execute (bad shape, NaN, ...)."""


class SuiteError(Exception):
    """A task list or setting the suite cannot honour."""


class EnvFailure(Exception):
    """The simulator could not do its part; ``terminal_reason`` says which part (report schema v1 enum)."""

    def __init__(self, terminal_reason: TerminalReason, message: str) -> None:
        super().__init__(message)
        self.terminal_reason = terminal_reason


class ReportError(Exception):
    """A report.json that cannot be read, or cannot stand for this run (another export, seed or protocol)."""


class EpisodeHarnessError(Exception):
    """The harness could not run the episode (reported as a pytest error)."""


class EpisodeFailure(Exception):
    """The policy did not complete the task (reported as a pytest failure)."""
