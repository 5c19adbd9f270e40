from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_vla.export import export_files
from pytest_vla.plan import EvalPlan
from pytest_vla.report import ReportWriter, write_json_atomically
from pytest_vla.suites.base import TaskSpec
from pytest_vla.summary import summary_lines
from tests.models import state_only_export

TASKS = (
    TaskSpec("libero_object", 3, "pick up the bbq sauce and place it in the basket", 280),
    TaskSpec("libero_goal", 0, "open the middle drawer of the cabinet", 300),
)


def _plan(tmp_path: Path) -> EvalPlan:
    return EvalPlan(
        suite="libero",
        export=state_only_export(tmp_path / "export"),
        output=tmp_path / "out",
        tasks=TASKS,
        num_episodes=2,
        seed=7,
        max_steps_override=None,
        save_trajectories=False,
        episode_timeout_override=None,
        cameras=(),
        provider="CPUExecutionProvider",
        collect_paths=False,
    )


def _row(task: TaskSpec, episode: int, reason: str) -> dict:
    return {
        "task_id": task.family,
        "task_index": task.index,
        "episode_index": episode,
        "success": reason == "success",
        "terminal_reason": reason,
        "wall_clock_s": 1.5,
        "n_steps": 12,
        "video_path": None,
        "error_message": None if reason in ("success", "timeout") else "boom",
    }


def test_report_tallies_families_and_tasks_and_validates(tmp_path: Path, validate_report, pytestconfig) -> None:
    plan = _plan(tmp_path)
    writer = ReportWriter(plan, {"settle_steps": 10}, workers=2, export_files=export_files(plan.export))
    writer.add(_row(TASKS[1], 1, "timeout"))
    writer.add(_row(TASKS[0], 1, "adapter_error"))
    writer.add(_row(TASKS[0], 0, "success"))
    writer.add(_row(TASKS[0], 1, "success"))  # a rerun of the same episode replaces the first attempt
    path = writer.write(pytestconfig)
    report = validate_report(path)
    assert report["tasks"] == ["libero_object", "libero_goal"]
    assert report["aggregate"] == {"success_rate": pytest.approx(2 / 3), "n_success": 2, "n_total": 3}
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
    assert any(line.split()[:3] == ["aggregate", "2/3", "66.7%"] for line in lines)


def test_atomic_write_leaves_the_old_file_when_serialising_fails(tmp_path: Path) -> None:
    path = tmp_path / "report.json"
    write_json_atomically(path, {"ok": True})
    with pytest.raises(TypeError):
        write_json_atomically(path, {"bad": object()})
    assert json.loads(path.read_text()) == {"ok": True}
    assert list(tmp_path.iterdir()) == [path]
