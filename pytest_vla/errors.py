"""Every exception and warning pytest-vla raises, and the one-line form users see them in.

Each message is one line that names the culprit (a file and key, an option, a task), so a
broken export or setup is told in one ``ERROR:`` line, never a traceback.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pytest_vla.report.schema import TerminalReason

MAX_READ_BYTES = 256 * 1024**2  # a file read whole: no report, manifest or tokenizer comes near; larger is refused
# C0 and C1 controls: in a terminal, ESC and CSI sequences move the cursor, hide lines, set the title, write the
# clipboard (OSC 52). Text from files (reports, exports) is printed with them made visible.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: str) -> str:
    """``text`` with every control character (newlines and tabs too) written as a visible ``\\xNN`` escape."""
    return _CONTROL.sub(lambda match: f"\\x{ord(match.group()):02x}", text)


def one_line(exc: BaseException) -> str:
    """``Type: message`` with all whitespace collapsed and control characters made visible: one printable line."""
    text = printable(" ".join(str(exc).split()))
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def short_repr(value: Any, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters: a value from a file, quoted in a message."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read_json(path: Path, error: type[Exception], **loads: Any) -> Any:
    """The JSON document at ``path``; an unreadable, oversized or malformed file raises ``error`` naming it.

    Malformed includes NaN and infinities (``NaN``, ``Infinity``, ``1e999``), which JSON does not have and
    Python would otherwise accept, and nesting too deep to parse.
    """
    try:
        with path.open("rb") as stream:
            data = stream.read(MAX_READ_BYTES + 1)  # bounded even for a FIFO or /dev/zero
    except OSError as exc:
        raise error(f"{path}: cannot be read: {exc.strerror or one_line(exc)}") from None
    if len(data) > MAX_READ_BYTES:
        raise error(f"{path}: larger than {MAX_READ_BYTES // 1024**2} MiB: refused unread")
    try:
        return json.loads(data.decode("utf-8"), parse_constant=_no_constant, parse_float=_finite, **loads)
    except UnicodeDecodeError as exc:
        raise error(f"{path}: not valid JSON: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    except RecursionError:
        raise error(f"{path}: not valid JSON: nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, a non-finite number, an integer of over 4300 digits
        raise error(f"{path}: not valid JSON: {printable(str(exc))}") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError(f"{text[:20]} is out of range for a float")
    return number


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
    """A report.json that cannot be read, or cannot stand for this run (another export, seed or protocol).

    ``problems`` holds one line per problem found (a report that breaks its schema in several places), each
    :func:`printable`: they quote the report.
    """

    def __init__(self, *problems: str) -> None:
        self.problems = tuple(printable(problem) for problem in problems)
        super().__init__("\n".join(self.problems))


class EpisodeHarnessError(Exception):
    """The harness could not run the episode (reported as a pytest error)."""


class EpisodeFailure(Exception):
    """The policy did not complete the task (reported as a pytest failure)."""
