"""The terminal summary: success per task, per family and overall, and where the report went."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from pytest_vla.errors import printable
from pytest_vla.report.schema import STAGE_ORDER


def summary_lines(report: dict[str, Any], report_path: Path) -> list[str]:
    lines = [
        f"{result['task_id']:<15} task {result['task_index']:<3} {_rate(result)}   {result['instruction']}"
        for result in report["task_results"]
        if result["n_total"]
    ]
    lines.append("")
    lines.extend(f"{result['task_id']:<15} {'all':<8} {_rate(result)}" for result in report["results"])
    lines.append(f"{'aggregate':<15} {'':<8} {_rate(report['aggregate'])}")
    lines.extend(_repeated_trials(report))
    stopped = _stages_of_failures(report["episodes"])
    if stopped:
        lines.append(f"failed episodes by the furthest stage reached: {stopped}")
    aggregate = report["aggregate"]
    if aggregate.get("n_watched"):
        lines.append(
            f"side effects: {aggregate['n_side_effects']} of {aggregate['n_watched']} episodes disturbed an object "
            f"their goal does not name{_most_disturbed(report['episodes'])}"
        )
    lines.append("")
    legend = "[low, high]: 95% Wilson interval"
    if report["aggregate"].get("mean_progress") is not None:
        legend += "; progress: mean share of the goal held at once, 95% t interval"
    lines.append(f"{legend}   provider: {report['execution_provider']}   report: {report_path}")
    return [printable(line) for line in lines]  # task ids and instructions come from the report


def _rate(tally: dict[str, Any]) -> str:
    fraction = f"{tally['n_success']}/{tally['n_total']}"
    interval = tally.get("ci95")
    spread = f" [{100 * interval[0]:5.1f}, {100 * interval[1]:5.1f}]" if interval else " " * 15
    return f"{fraction:>7}  {100 * tally['success_rate']:5.1f}%{spread}{_progress(tally)}"


def _repeated_trials(report: dict[str, Any]) -> list[str]:
    """``repeated trials: ... pass@1 40.0%  pass@3 80.0%  pass^3 10.0%``, per family and overall, when trials repeat."""
    lines = []
    tallies = [*((result["task_id"], result) for result in report["results"]), ("aggregate", report["aggregate"])]
    for name, tally in tallies:
        at, hat = tally.get("pass_at_k"), tally.get("pass_hat_k")
        if not at or not hat:
            continue
        most = max(at, key=int)
        lines.append(
            f"{name:<15} {'trials':<8} pass@1 {100 * at['1']:5.1f}%  pass@{most} {100 * at[most]:5.1f}%  "
            f"pass^{most} {100 * hat[most]:5.1f}%   over {tally['n_init_states']} init states "
            f"(the interval counts {tally['n_effective']:g} of {tally['n_total']} trials as independent)"
        )
    return lines


def _progress(tally: dict[str, Any]) -> str:
    mean, interval = tally.get("mean_progress"), tally.get("progress_ci95")
    if mean is None:
        return ""
    spread = f" [{100 * interval[0]:3.0f}, {100 * interval[1]:3.0f}]" if interval else ""
    return f"   progress {100 * mean:3.0f}%{spread}"


def _most_disturbed(rows: list[dict[str, Any]]) -> str:
    """`` (cup_1 3, plate_1 1)``: the objects disturbed most often, three at most."""
    counts = Counter(effect.get("object") for row in rows for effect in row.get("side_effects") or [])
    named = ", ".join(f"{name} {count}" for name, count in counts.most_common(3))
    return f" ({named})" if named else ""


def _stages_of_failures(rows: list[dict[str, Any]]) -> str:
    """``untouched 2, grasped 1``: where the failed episodes stopped getting further, in the stages' order."""
    counts = Counter(row.get("stage") for row in rows if not row["success"] and row.get("stage") in STAGE_ORDER)
    return ", ".join(f"{stage} {counts[stage]}" for stage in STAGE_ORDER if counts[stage])


def duration_text(seconds: float) -> str:
    """``1h05m`` or ``4m09s``: how long, as a person reads an ETA."""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"
