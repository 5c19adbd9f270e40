"""The run's exit status, decided from the episodes: what CI reads.

| status | meaning |
|---|---|
| 0 | every episode ran; every one succeeded, or the aggregate met ``--vla-min-success-rate`` |
| 1 | episodes failed (or the aggregate missed the gate), or a test of your own failed |
| 2 | interrupted (Ctrl-C, SIGTERM): report.json is partial |
| 4 | preflight or usage error: nothing ran |
| 6 | harness errors: some episodes could not be evaluated (env, rendering, policy output) |
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Any

import pytest

from pytest_vla.episode import HARNESS_ERRORS
from pytest_vla.report import row_key

HARNESS_ERROR_EXIT = 6


def exit_status(
    pytest_status: int,
    rows: Iterable[dict[str, Any]],
    min_success_rate: float | None,
    other_failures: int,
    expected_failures: Collection[tuple[str, int, int]] = (),
) -> int:
    """The exit status for a run pytest ended with ``pytest_status``.

    ``expected_failures``: episodes marked ``xfail`` that failed; they count in the aggregate, but
    neither they nor their harness errors fail the run.
    """
    if pytest_status not in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED):
        return pytest_status  # interrupted, usage error, nothing collected: pytest's word stands
    rows = list(rows)
    judged = [row for row in rows if row_key(row) not in expected_failures]
    if any(row["terminal_reason"] in HARNESS_ERRORS for row in judged):
        return HARNESS_ERROR_EXIT
    if other_failures:
        return pytest.ExitCode.TESTS_FAILED
    if min_success_rate is not None:
        return pytest.ExitCode.OK if gate_holds(rows, min_success_rate) else pytest.ExitCode.TESTS_FAILED
    return pytest.ExitCode.OK if all(row["success"] for row in judged) else pytest.ExitCode.TESTS_FAILED


def gate_holds(rows: list[dict[str, Any]], min_success_rate: float) -> bool:
    return bool(rows) and sum(row["success"] for row in rows) / len(rows) >= min_success_rate


def gate_line(rows: list[dict[str, Any]], min_success_rate: float) -> str:
    rate = sum(row["success"] for row in rows) / len(rows) if rows else 0.0
    verdict = "held" if gate_holds(rows, min_success_rate) else "missed"
    return f"gate: success rate {100 * rate:.1f}% vs --vla-min-success-rate {100 * min_success_rate:.1f}%: {verdict}"
