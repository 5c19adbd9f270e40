"""Reading report.json back (merge, compare, report, --vla-resume, --vla-baseline): nothing in it is trusted.

Every report read is checked against the schema v1 contract and pytest-vla's additions, then against
what a schema cannot say; each problem is one line naming the file and the field, and the commands
exit 2, never with a traceback. What they print from a report or an export cannot drive the terminal.
"""

from __future__ import annotations

import copy
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_vla.cli import main
from pytest_vla.errors import ReportError, one_line, printable, read_json
from pytest_vla.report.compare import compare, comparison_lines
from pytest_vla.report.reader import load_report
from pytest_vla.report.summary import summary_lines
from tests.models import linear_policy, write_export
from tests.reports import written

SHARED_SCHEMA = Path(__file__).resolve().parents[2] / "shared" / "schema" / "report-v1.schema.json"
PACKAGED_SCHEMA = Path(__file__).resolve().parents[1] / "pytest_vla" / "report" / "report-v1.schema.json"
ESCAPE = "\x1b]52;c;cm0gLXJmIH4=\x07\x1b[2K"  # OSC 52 writes the clipboard; CSI 2K erases the line


def minimal(outcomes: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """``{"family:index": [terminal reason per episode]}`` as the few keys :func:`written` needs."""
    outcomes = outcomes or {"libero_object:0": ["success", "timeout"], "libero_goal:1": ["adapter_error", "success"]}
    tasks, episodes = [], []
    for key, reasons in outcomes.items():
        family, _, index = key.rpartition(":")
        tasks.append({"task_id": family, "task_index": int(index), "instruction": "do it", "max_steps": 100})
        episodes += [
            {"task_id": family, "task_index": int(index), "episode_index": episode, "terminal_reason": reason}
            for episode, reason in enumerate(reasons)
        ]
    return {"suite": "libero", "seed": 7, "protocol": {"settle_steps": 10}, "task_results": tasks, "episodes": episodes}


def _write(path: Path, report: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report))
    return path


def _problems(path: Path) -> list[str]:
    with pytest.raises(ReportError) as caught:
        load_report(path)
    assert str(caught.value) == "\n".join(caught.value.problems)
    return list(caught.value.problems)


@pytest.mark.skipif(not SHARED_SCHEMA.is_file(), reason="no ../shared/schema in this checkout")
def test_the_packaged_schema_is_the_shared_contract() -> None:
    assert json.loads(PACKAGED_SCHEMA.read_text()) == json.loads(SHARED_SCHEMA.read_text())


def test_a_written_report_reads_back(tmp_path: Path) -> None:
    report = written(minimal())
    assert load_report(_write(tmp_path / "report.json", report)) == report


def _set(pointer: str, value: Any):
    def change(report: dict[str, Any]) -> None:
        *parents, last = pointer.strip("/").split("/")
        node = report
        for part in parents:
            node = node[int(part) if isinstance(node, list) else part]
        if value is KeyError:
            del node[last]
        else:
            node[int(last) if isinstance(node, list) else last] = value

    return change


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        (_set("/episodes/0/n_steps", KeyError), "/episodes/0: 'n_steps' is a required property"),
        (_set("/episodes/1/video_path", KeyError), "/episodes/1: 'video_path' is a required property"),
        (_set("/episodes/2/wall_clock_s", "1.5"), "/episodes/2/wall_clock_s: '1.5' is not of type 'number'"),
        (_set("/episodes/0/max_steps", KeyError), "/episodes/0: 'max_steps' is a required property"),
        (_set("/episodes/3/task_index", True), "/episodes/3/task_index: True is not of type 'integer'"),
        # success and terminal_reason say the same thing, or the tallies and compare disagree.
        (_set("/episodes/0/terminal_reason", "adapter_error"), "/episodes/0/terminal_reason: 'success' was expected"),
        (_set("/episodes/1/success", True), "/episodes/1/terminal_reason: 'success' was expected"),
        (_set("/task_results/0/clean_task", "libero_object:²"), "/task_results/0/clean_task: 'libero_object:²' does"),
        (_set("/started_at", "2026-13-45T00:00:00Z"), "/started_at: '2026-13-45T00:00:00Z' is not a time"),
        (_set("/workers", "4"), "/workers: '4' is not of type 'integer'"),
        (_set("/shard", {"index": 2, "count": 2}), "/shard: index 2 is not below count 2"),
        # A merge lists every episode of the run and cuts it into shards: both bounded.
        (_set("/shard", {"index": 2, "count": 10**9}), "/shard/count: 1000000000 is greater than the maximum of 10000"),
        (_set("/num_episodes_per_task", 10**9), "/num_episodes_per_task: a run of 2000000000 episodes, more than"),
        (_set("/repeat", 101), "/repeat: 101 is greater than the maximum of 100"),
        (_set("/episodes/1/trial", 1), "/episodes/1/trial: 1 is not below the report's repeat 1"),
        (
            _set("/missing_episodes", [{"task_id": "libero_object", "task_index": 0, "episode_index": 0, "trial": 7}]),
            "/missing_episodes/0/trial: 7 is not below the report's repeat 1",
        ),
        (_set("/invocation", {"args": "-p evil", "cwd": "/"}), "/invocation/args: '-p evil' is not of type 'array'"),
        (_set("/env/export_files", KeyError), "/env: 'export_files' is a required property"),
        (_set("/aggregate/n_success", 3), "/aggregate: says 3/4, its episodes are 2/4"),
        (_set("/task_results/1/success_rate", 0.9), "/task_results/1/success_rate: 0.9 is not 1/2"),
        (_set("/results/0/n_total", 1), "/results/0: says 1/1, its episodes are 1/2"),
    ],
)
def test_a_report_that_breaks_its_contract_is_refused_naming_the_field(tmp_path, change, problem: str) -> None:
    report = written(minimal())
    change(report)
    path = _write(tmp_path / "report.json", report)
    problems = _problems(path)
    assert any(line.startswith(f"{path}: {problem}") for line in problems), problems


def test_a_repeated_episode_is_refused_not_counted_twice(tmp_path: Path) -> None:
    report = written(minimal())
    report["episodes"].append(copy.deepcopy(report["episodes"][0]))
    report["aggregate"].update(n_success=3, n_total=5, success_rate=0.6)  # tallies that count the repeat
    path = _write(tmp_path / "report.json", report)
    assert f"{path}: /episodes/4: repeats the episode of /episodes/0 (libero_object:0 episode 0)" in _problems(path)
    # compare refuses it (it doubled the pairs and shrank the p-values), and so does --vla-baseline: same reader.
    assert main(["compare", str(path), str(path)]) == 2


def test_every_problem_is_told_on_a_line_of_its_own_up_to_twenty(tmp_path: Path) -> None:
    report = written(minimal({"libero_object:0": ["timeout"] * 30}))
    for row in report["episodes"]:
        row["n_steps"] = -1
    path = _write(tmp_path / "report.json", report)
    problems = _problems(path)
    assert len(problems) == 21 and problems[-1] == f"{path}: and 10 more problems"
    assert problems[:20] == [f"{path}: /episodes/{i}/n_steps: -1 is less than the minimum of 0" for i in range(20)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"a": NaN}', "NaN is not JSON"),
        ('{"a": -Infinity}', "-Infinity is not JSON"),
        ('{"a": 1e999}', "1e999 is out of range for a float"),
        ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ('{"a": ' + "1" * 5000 + "}", "Exceeds the limit (4300 digits)"),
        (b"\xff\xfe", "not UTF-8"),
    ],
)
def test_json_that_python_would_misread_or_crash_on_is_refused_in_one_line(tmp_path, text, message: str) -> None:
    path = tmp_path / "report.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ReportError, match=f"^{re.escape(str(path))}: not valid JSON: .*{re.escape(message)}") as caught:
        load_report(path)
    assert "\n" not in str(caught.value)


def test_a_huge_file_is_refused_unread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("pytest_vla.errors.MAX_READ_BYTES", 1000)
    path = tmp_path / "report.json"
    path.write_text(json.dumps({"notes": "x" * 1000}))
    with pytest.raises(ReportError, match="larger than 0 MiB: refused unread"):
        read_json(path, ReportError)


def test_report_and_compare_exit_2_with_a_line_per_problem_and_no_traceback(tmp_path, capsys) -> None:
    report = written(minimal())
    del report["episodes"][0]["wall_clock_s"]
    report["episodes"][1]["n_steps"] = "many"
    path = _write(tmp_path / "run" / "report.json", report)
    assert main(["report", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err == [
        f"pytest-vla report: {path}: /episodes/0: 'wall_clock_s' is a required property",
        f"pytest-vla report: {path}: /episodes/1/n_steps: 'many' is not of type 'integer'",
    ]
    good = _write(tmp_path / "good" / "report.json", written(minimal()))
    assert main(["compare", str(good), str(path)]) == 2
    assert len(capsys.readouterr().err.splitlines()) == 2


def test_printable_makes_every_control_character_visible() -> None:
    visible = "a\\x1b]52;c;cm0gLXJmIH4=\\x07\\x1b[2Kb\\x0a\\x09\\x7f\\x9f\u00a0é"
    assert printable(f"a{ESCAPE}b\n\t\x7f\x9f\u00a0é") == visible
    assert one_line(ValueError(f"bad\n{ESCAPE}")) == "ValueError: bad \\x1b]52;c;cm0gLXJmIH4=\\x07\\x1b[2K"


def test_what_is_printed_from_a_report_cannot_drive_the_terminal(tmp_path: Path) -> None:
    hostile = minimal({f"libero_object{ESCAPE}:0": ["success"]})
    hostile["task_results"][0]["instruction"] = f"pick{ESCAPE}\nup"
    report = written(hostile)
    path = _write(tmp_path / "report.json", report)
    assert load_report(path) == report  # a strange name is no contract breach; printing it raw would be
    lines = summary_lines(report, path) + comparison_lines(
        compare(report, report, margin=0.05, base_name="base", new_name="new")
    )
    assert not any(char in line for line in lines for char in "\x1b\x07\n")
    assert "libero_object\\x1b]52;c;cm0gLXJmIH4=\\x07\\x1b[2K:0" in "\n".join(lines)
    # In a refusal too: the problem quotes the report.
    report["aggregate"]["n_total"] = 0
    (problem,) = _problems(_write(tmp_path / "bad.json", report))
    report["episodes"][0]["task_id"] = ESCAPE
    assert all("\x1b" not in line for line in _problems(_write(tmp_path / "worse.json", report)))
    assert "\x1b" not in problem


def test_jsonschema_is_imported_only_to_read_a_report() -> None:
    code = "import sys, pytest_vla.plugin, pytest_vla.cli; print('jsonschema' in sys.modules)"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert loaded.stdout.strip() == "False"


# --- merge ----------------------------------------------------------------------------------------------------


def _shards(tmp_path: Path, **invocation: Any) -> Path:
    """Shard 0/2 of a two-task run (its task 0), as the writer writes it; shard 1/2 never reported."""
    report = written(minimal({"libero_object:0": ["success"], "libero_object:1": []}))
    report["shard"] = {"index": 0, "count": 2}
    report["invocation"] = {"args": ["--vla-suite", "libero"], "cwd": str(tmp_path), **invocation}
    _write(tmp_path / "shard-0" / "report.json", report)
    return tmp_path / "shard-0"


def test_merge_refuses_to_write_over_a_source(tmp_path: Path, capsys) -> None:
    source = _shards(tmp_path)
    for output in (source, source / ".." / "shard-0", source / "report.json"):
        for named in (source, source / "report.json"):
            assert main(["merge", "--output", str(output), str(named)]) == 2
            (line,) = capsys.readouterr().err.splitlines()
            assert line == (
                f"pytest-vla merge: --output {output} is where the source {source / 'report.json'} is: "
                "merge into another directory"
            )
    assert json.loads((source / "report.json").read_text())["shard"] == {"index": 0, "count": 2}


def test_the_command_for_a_missing_shard_is_the_reports_said_so_and_quoted(tmp_path: Path, capsys) -> None:
    args = ["--vla-suite", "libero", "-k", "a; touch /tmp/owned", f"-p{ESCAPE}"]
    source = _shards(tmp_path, args=args, cwd=f"{tmp_path}/it's here")
    assert main(["merge", "--output", str(tmp_path / "merged"), str(source)]) == 1
    line = capsys.readouterr().out.splitlines()[-1]
    assert f"The command shard 0/2 ran with, as {source / 'report.json'} records it (check it before running" in line
    assert "\x1b" not in line
    cd, _, command = line.partition(": cd ")[2].partition(" && ")
    assert shlex.split(cd) == [f"{tmp_path}/it's here"]
    assert shlex.split(command)[:5] == ["pytest", "--vla-suite", "libero", "-k", "a; touch /tmp/owned"]


JUNIT = '<testsuites><testsuite name="{name}" tests="0"/></testsuites>'


@pytest.mark.parametrize(
    "document",
    [
        '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file://{secret}">]>' + JUNIT.format(name="&e;"),
        '<!DOCTYPE x [<!ENTITY a "{secret}"><!ENTITY b "&a;&a;&a;&a;">]>' + JUNIT.format(name="&b;"),
        '<!DOCTYPE testsuites SYSTEM "http://127.0.0.1:9/junit.dtd">' + JUNIT.format(name="x"),
    ],
)
def test_junit_with_a_dtd_is_refused_so_no_entity_is_resolved(tmp_path: Path, capsys, document: str) -> None:
    secret = tmp_path / "secret"
    secret.write_text("the secret")
    source = _shards(tmp_path)
    (source / "junit.xml").write_text(document.format(secret=secret))
    assert main(["merge", "--output", str(tmp_path / "merged"), str(source)]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line == (
        f"pytest-vla merge: {source / 'junit.xml'}: declares a DTD (<!DOCTYPE>), which JUnit XML has no use for: "
        "refused"
    )
    assert not (tmp_path / "merged" / "junit.xml").exists()


def test_inspect_prints_an_exports_names_with_their_control_characters_visible(tmp_path: Path, capsys) -> None:
    export = write_export(tmp_path / "e", linear_policy(), {f"state{ESCAPE}": {"source": "state"}})
    assert main(["inspect", str(export), "--tasks", "libero_object:0"]) == 1
    captured = capsys.readouterr()
    assert "state\\x1b]52;c;" in captured.out and "state\\x1b]52;c;" in captured.err
    assert "\x1b" not in captured.out + captured.err


def test_a_merge_reads_times_without_a_fraction_of_a_second(tmp_path: Path, capsys) -> None:
    source = _shards(tmp_path)
    report = json.loads((source / "report.json").read_text())
    report["started_at"], report["finished_at"] = "2026-12-01T10:00:00Z", "2026-12-01T10:00:02.5Z"
    _write(source / "report.json", report)
    assert main(["merge", "--output", str(tmp_path / "merged"), str(source)]) == 1
    merged = load_report(tmp_path / "merged" / "report.json")
    assert (merged["started_at"], merged["wall_clock_s"]) == ("2026-12-01T10:00:00Z", 2.5)
