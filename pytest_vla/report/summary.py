"""The terminal summary: success per task, per family and overall, and where the report went."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pytest_vla.errors import printable


def summary_lines(report: dict[str, Any], report_path: Path) -> list[str]:
    lines = [
        f"{result['task_id']:<15} task {result['task_index']:<3} {_rate(result)}   {result['instruction']}"
        for result in report["task_results"]
        if result["n_total"]
    ]
    lines.append("")
    lines.extend(f"{result['task_id']:<15} {'all':<8} {_rate(result)}" for result in report["results"])
    lines.append(f"{'aggregate':<15} {'':<8} {_rate(report['aggregate'])}")
    lines.append("")
    lines.append(f"[low, high]: 95% Wilson interval   provider: {report['execution_provider']}   report: {report_path}")
    return [printable(line) for line in lines]  # task ids and instructions come from the report


def _rate(tally: dict[str, Any]) -> str:
    fraction = f"{tally['n_success']}/{tally['n_total']}"
    interval = tally.get("ci95")
    spread = f" [{100 * interval[0]:5.1f}, {100 * interval[1]:5.1f}]" if interval else " " * 15
    return f"{fraction:>7}  {100 * tally['success_rate']:5.1f}%{spread}"


def duration_text(seconds: float) -> str:
    """``1h05m`` or ``4m09s``: how long, as a person reads an ETA."""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"
