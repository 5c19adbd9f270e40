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
        repeat=1,
        protocol={"settle_steps": 10},
        provider="CPUExecutionProvider",
        workers=2,
        policy={"kind": "onnx-export", "export_dir": str(export), "export_files": export_files(export)},
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
        "mean_progress": None,  # these rows' suite says nothing of a goal
        "n_progress": 0,
        "progress_ci95": None,
        "n_side_effects": 0,
        "n_watched": 0,
        "n_init_states": 3,  # one trial each: every trial counts in the interval
        "n_effective": 3.0,
        "pass_at_k": None,  # unrepeated
        "pass_hat_k": None,
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


def test_the_journal_keeps_every_row_and_refuses_a_line_that_is_not_one(tmp_path: Path) -> None:
    from pytest_vla.errors import ReportError
    from pytest_vla.report.journal import Journal, read_journal

    path = tmp_path / "out" / "episodes.jsonl"
    journal = Journal(path)
    rows = [_row(TASKS[0], 0, "timeout"), _row(TASKS[0], 0, "success")]  # a rerun: the later line decides
    for row in rows:
        journal.append(row)
    journal.close()
    assert read_journal(path) == (rows, None)
    with path.open("a") as stream:
        stream.write('{"task_id": "libero_obj')  # killed mid-write
    kept, torn = read_journal(path)
    assert kept == rows and torn == f"{path}: line 3 is an incomplete row (the run was killed writing it): ignored"
    path.write_text(json.dumps(rows[0]) + "\n[1, 2]\n" + json.dumps(rows[1]) + "\n")
    with pytest.raises(
        ReportError,
        match=r"episodes.jsonl: line 2 is not a pytest-vla episode row \(/: \[1, 2\] is not of type 'object'\)$",
    ):
        read_journal(path)
    (tmp_path / "elsewhere").write_text("")
    path.unlink()
    path.symlink_to(tmp_path / "elsewhere")
    with pytest.raises(OSError):  # a planted link is not followed
        Journal(path).append(rows[0])
    assert (tmp_path / "elsewhere").read_text() == ""


def test_report_json_is_rewritten_at_most_every_few_seconds(tmp_path: Path, monkeypatch) -> None:
    from pytest_vla.report import writer as writer_module

    writer = _writer(tmp_path)
    clock = [100.0]
    monkeypatch.setattr(writer_module.time, "monotonic", lambda: clock[0])
    assert writer.write_if_due()  # never written: now
    assert not writer.write_if_due()
    clock[0] += writer_module.REWRITE_EVERY_S
    assert writer.write_if_due()


def test_earlier_results_move_aside_under_their_start(tmp_path: Path) -> None:
    from pytest_vla.report.layout import OutputLayout

    layout = OutputLayout(tmp_path)
    layout.report_json.write_text("{}")
    layout.videos.mkdir()
    (tmp_path / "junit-ci.xml").write_text("<testsuites/>")
    layout.trajectories.write_text("a file, not a run's trajectories")
    paths = layout.results(tmp_path / "junit-ci.xml")
    assert [path.name for path in paths] == ["report.json", "junit-ci.xml", "videos"]
    first = layout.move_aside(paths, "2026-12-02T04:34:14.123456Z")
    assert first == tmp_path / "previous" / "20261202T043414Z" and (first / "videos").is_dir()
    layout.report_json.write_text("{}")
    second = layout.move_aside([layout.report_json], "2026-12-02T04:34:14.9Z")  # the same second
    assert second.name == "20261202T043414Z-2"
    layout.report_json.write_text("{}")
    third = layout.move_aside([layout.report_json], "../../etc")  # not a timestamp: the file's own time
    assert third.parent == layout.previous and third.name[:8].isdigit()


def test_the_schema_names_the_stages_the_rows_use() -> None:
    from importlib import resources

    from pytest_vla.report.schema import Stage

    schema = json.loads(resources.files("pytest_vla.report").joinpath("pytest-vla-report.schema.json").read_text())
    assert schema["$defs"]["stage"]["enum"] == [stage.value for stage in Stage]
