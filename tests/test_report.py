from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from pytest_vla.export.files import export_files
from pytest_vla.report.schema import EpisodeRow, TaskSpec, TerminalReason, episode_row
from pytest_vla.report.summary import summary_lines
from pytest_vla.report.writer import ReportWriter, RunInfo, write_json_atomically
from tests.models import state_only_export

TASKS = (
    TaskSpec("libero_object", 3, "pick up the bbq sauce and place it in the basket", 280),
    TaskSpec("libero_goal", 0, "open the middle drawer of the cabinet", 300),
)


def _writer(tmp_path: Path) -> ReportWriter:
    export = state_only_export(tmp_path / "export")
    info = RunInfo(
        suite="libero",
        seed=7,
        tasks=TASKS,
        num_episodes=2,
        protocol={"settle_steps": 10},
        provider="CPUExecutionProvider",
        workers=2,
        export_dir=export,
        export_files=export_files(export),
        shard=None,
        invocation=None,
    )
    return ReportWriter(info, tmp_path / "out")


def _row(task: TaskSpec, episode: int, reason: str) -> EpisodeRow:
    error = None if reason in ("success", "timeout") else "boom"
    return episode_row(
        task.episode(episode),
        reason=TerminalReason(reason),
        instruction=task.instruction,
        max_steps=task.max_steps,
        worker="gw0",
        n_steps=12,
        wall_clock_s=1.5,
        error_message=error,
    )


def test_report_tallies_families_and_tasks_and_validates(tmp_path: Path, validate_report) -> None:
    writer = _writer(tmp_path)
    writer.add(_row(TASKS[1], 1, "timeout"))
    writer.add(_row(TASKS[0], 1, "adapter_error"))
    writer.add(_row(TASKS[0], 0, "success"))
    writer.add(_row(TASKS[0], 1, "success"))  # a rerun of the same episode replaces the first attempt
    written = writer.write()
    path = writer.path
    report = validate_report(path)
    assert written == report  # what write() returns is what it wrote
    assert report["tasks"] == ["libero_object", "libero_goal"]
    assert report["aggregate"] == {
        "success_rate": pytest.approx(2 / 3),
        "n_success": 2,
        "n_total": 3,
        "ci95": [0.207660, 0.938508],  # Wilson, 95%, 2 of 3: (2 + z²/2 ± z·sqrt(2·1/3 + z²/4)) / (3 + z²)
    }
    # At the edges Wilson has closed forms: 2 of 2 -> [2 / (2 + z²), 1], 0 of 1 -> [0, z² / (1 + z²)].
    assert [r["ci95"] for r in report["task_results"]] == [[0.34238, 1.0], [0.0, 0.793451]]
    assert [r["n_success"] for r in report["results"]] == [2, 0]
    assert [(r["task_index"], r["n_total"]) for r in report["task_results"]] == [(3, 2), (0, 1)]
    assert [(e["task_id"], e["episode_index"]) for e in report["episodes"]] == [
        ("libero_object", 0),
        ("libero_object", 1),
        ("libero_goal", 1),
    ]
    assert report["env"]["onnx_files"][0]["name"] == "model.onnx"
    lines = summary_lines(report, path)
    assert any(line.split()[:5] == ["libero_object", "task", "3", "2/2", "100.0%"] for line in lines)
    assert "aggregate                    2/3   66.7% [ 20.8,  93.9]" in lines


def test_atomic_write_leaves_the_old_file_when_serialising_fails(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    write_json_atomically(path, {"ok": True})
    with pytest.raises(TypeError):
        write_json_atomically(path, {"bad": object()})
    assert json.loads(path.read_text()) == {"ok": True}
    assert list(tmp_path.iterdir()) == [path]


def test_report_json_is_readable_by_others(tmp_path: Path) -> None:
    # Artifact uploaders often run as another user: the report gets a plain file's mode, not 0600.
    path = tmp_path / "report.json"
    write_json_atomically(path, {"ok": True})
    assert path.stat().st_mode & 0o777 == 0o666 & ~_umask()
    assert path.stat().st_mode & 0o044 == 0o044


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
