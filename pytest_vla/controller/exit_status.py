"""The run's exit status, decided from the episodes: what CI reads (the table: ``docs/report.md``).

0: every selected episode ran, and every one succeeded, or the gates that were asked for held: the
aggregate met ``--vla-min-success-rate``, and ``--vla-baseline``'s comparison found no significant
regression beyond the margin.
1: episodes failed (or the gate was missed), selected episodes never ran (``--maxfail``), or a test
of the user's own failed. 2: interrupted. 4: preflight or usage error. 5: nothing selected.
6: harness errors, which win over the gate: some episode was not measured (env, rendering,
policy output, a dead worker, an error pytest reported for an episode without its result).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field

import pytest

from pytest_vla.report.schema import EpisodeId, EpisodeRow, TerminalReason, success_rate

HARNESS_ERROR_EXIT = 6


@dataclass
class RunVerdict:
    """What the controller saw of a run, beyond pytest's own status."""

    rows: list[EpisodeRow]
    min_success_rate: float | None = None
    regressed: bool | None = None  # against --vla-baseline; None without one
    missing: int = 0  # selected episodes without a row
    other_failures: int = 0  # failed tests of the user's own beside the episodes
    unrecorded: int = 0  # episode reports pytest failed without a row (an error outside the episode)
    expected_failures: Collection[EpisodeId] = field(default_factory=set)  # xfail-marked episodes that failed
    nothing_left: bool = False  # --vla-resume found every selected episode already in the report


def exit_status(pytest_status: int, verdict: RunVerdict) -> int:
    """The exit status for a run pytest ended with ``pytest_status``.

    Expected failures (``xfail``) count in the aggregate, but neither they nor their harness errors
    fail the run.
    """
    judged_statuses = {pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED}
    if verdict.nothing_left and pytest_status == pytest.ExitCode.NO_TESTS_COLLECTED:
        judged_statuses.add(pytest.ExitCode.NO_TESTS_COLLECTED)
    if pytest_status not in judged_statuses:
        return pytest_status  # interrupted, usage error, nothing selected: pytest's word stands
    judged = [row for row in verdict.rows if EpisodeId.of_row(row) not in verdict.expected_failures]
    if verdict.unrecorded or any(TerminalReason(row["terminal_reason"]).is_harness_error for row in judged):
        return HARNESS_ERROR_EXIT
    if verdict.missing or verdict.other_failures:
        return pytest.ExitCode.TESTS_FAILED
    gates = []
    if verdict.min_success_rate is not None:
        gates.append(gate_holds(verdict.rows, verdict.min_success_rate))
    if verdict.regressed is not None:
        gates.append(not verdict.regressed)
    if gates:
        return pytest.ExitCode.OK if all(gates) else pytest.ExitCode.TESTS_FAILED
    return pytest.ExitCode.OK if all(row["success"] for row in judged) else pytest.ExitCode.TESTS_FAILED


def gate_holds(rows: list[EpisodeRow], min_success_rate: float) -> bool:
    return bool(rows) and success_rate(rows) >= min_success_rate


def gate_line(rows: list[EpisodeRow], min_success_rate: float) -> str:
    verdict = "held" if gate_holds(rows, min_success_rate) else "missed"
    return (
        f"gate: success rate {100 * success_rate(rows):.1f}% vs --vla-min-success-rate "
        f"{100 * min_success_rate:.1f}%: {verdict}"
    )
