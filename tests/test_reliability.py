"""Exit status, the success-rate gate, and what an interrupted run leaves behind."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from junitparser.xunit2 import JUnitXml

from pytest_vla.controller.exit_status import HARNESS_ERROR_EXIT, RunVerdict, exit_status
from pytest_vla.errors import ExportError
from pytest_vla.export.files import export_files
from pytest_vla.export.manifest import NoiseInput, parse_manifest
from pytest_vla.policy.feeds import noise_tensor
from pytest_vla.report.schema import EpisodeId, TaskSpec, TerminalReason
from tests.models import hanging_policy, state_only_export, write_export
from tests.reports import written

OK, FAILED = pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED


def _rows(*reasons: str) -> list[dict[str, Any]]:
    return [
        {"task_id": "libero_spatial", "task_index": 0, "episode_index": index, "terminal_reason": reason,
         "success": reason == "success"}
        for index, reason in enumerate(reasons)
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("pytest_status", "rows", "gate", "other", "expected"),
    [
        (OK, _rows("success", "success"), None, 0, OK),
        (FAILED, _rows("success", "timeout"), None, 0, FAILED),
        (FAILED, _rows("success", "timeout"), 0.5, 0, OK),  # 50% meets a 0.5 gate
        (FAILED, _rows("success", "timeout", "timeout"), 0.5, 0, FAILED),
        (FAILED, _rows("success", "adapter_error"), 0.1, 0, HARNESS_ERROR_EXIT),  # errors beat the gate
        (FAILED, _rows("success", "rendering_failure"), None, 0, HARNESS_ERROR_EXIT),
        (FAILED, _rows("success", "success"), 0.5, 1, FAILED),  # a failing test of the user's own
        (pytest.ExitCode.INTERRUPTED, _rows("success"), 0.5, 0, pytest.ExitCode.INTERRUPTED),
        (pytest.ExitCode.USAGE_ERROR, [], None, 0, pytest.ExitCode.USAGE_ERROR),
    ],
)
def test_exit_status(
    pytest_status: int, rows: list[dict[str, Any]], gate: float | None, other: int, expected: int
) -> None:
    assert exit_status(pytest_status, RunVerdict(rows, min_success_rate=gate, other_failures=other)) == expected


@pytest.mark.libero
def test_the_gate_decides_the_exit_status(pytester: pytest.Pytester) -> None:
    state_only_export(pytester.path / "export")
    common = ["--vla-export", "export", "--vla-tasks", "libero_spatial:0", "--vla-num-episodes", "2",
              "--vla-max-steps", "2", "-p", "no:xdist"]  # fmt: skip
    held = pytester.runpytest_subprocess(*common, "--vla-min-success-rate", "0")
    held.assert_outcomes(failed=2)  # every episode is still a failed item ...
    assert held.ret == OK  # ... but the aggregate met the gate
    held.stdout.fnmatch_lines(["gate: success rate 0.0% vs --vla-min-success-rate 0.0%: held"])
    missed = pytester.runpytest_subprocess(*common, "--vla-min-success-rate", "0.5")
    assert missed.ret == FAILED
    missed.stdout.fnmatch_lines(["gate: success rate 0.0% vs --vla-min-success-rate 50.0%: missed"])


def test_a_bad_gate_is_a_usage_error(pytester: pytest.Pytester) -> None:
    state_only_export(pytester.path / "export")
    result = pytester.runpytest_subprocess("--vla-export", "export", "--vla-min-success-rate", "90")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "ERROR: --vla-min-success-rate must be a fraction in 0..1 (0.9 for 90%), got '90'" in result.stderr.str()


@pytest.mark.libero
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_run_keeps_finished_episodes_and_lists_the_rest(
    tmp_path: Path, signum: int, validate_report
) -> None:
    # Enough episodes that the signal, sent once report.json shows one, comes while others remain.
    command = [sys.executable, "-m", "pytest", "--vla-export", "demo", "--vla-tasks", "libero_object:0",
               "--vla-num-episodes", "12", "-p", "no:xdist", "-p", "no:cacheprovider"]  # fmt: skip
    process = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    report_path = tmp_path / "eval_output" / "report.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not _episodes_in(report_path):
        time.sleep(0.2)
    assert _episodes_in(report_path), "no episode finished in time"
    process.send_signal(signum)
    output, _ = process.communicate(timeout=120)
    assert process.returncode == pytest.ExitCode.INTERRUPTED, output
    assert "Traceback" not in output
    report = validate_report(report_path)
    assert report["partial"] is True
    done = [(row["episode_index"], row["terminal_reason"]) for row in report["episodes"]]
    assert done[0] == (0, "success")  # what finished is kept
    missing = [entry["episode_index"] for entry in report["missing_episodes"]]
    assert sorted([index for index, _ in done] + missing) == list(range(12))  # and the rest is listed
    assert 11 in missing


def _episodes_in(path: Path) -> int:
    try:
        return len(json.loads(path.read_text())["episodes"])
    except (OSError, ValueError, KeyError):
        return 0


# --- the manifest reader against malformed input -------------------------------------------------

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 5) | st.floats(allow_nan=False) | st.sampled_from(
        ["image", "state", "obs", "noise", "constant", "instruction_tokens", "agentview", "float32", "pad",
         "model.onnx", "vla-export/1", "actions", "mean_std", "stats.json", ""]
    ),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["format", "model", "inputs", "action", "source", "camera", "size", "dtype", "range", "shape",
                         "value", "key", "output", "dim", "execute", "gripper", "normalize", "stats", "mode", "pad_to",
                         "tokenizer", "max_length", "template", "resize", "layout", "x"]),
        children, max_size=6,
    ),
    max_leaves=20,
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(raw=JSON)
def test_any_json_is_a_manifest_or_one_export_error(tmp_path_factory: pytest.TempPathFactory, raw: Any) -> None:
    directory = tmp_path_factory.getbasetemp() / "manifest_fuzz"
    directory.mkdir(exist_ok=True)
    (directory / "model.onnx").write_bytes(b"")
    for wrapped in (raw, {"format": "vla-export/1", "model": "model.onnx", "inputs": raw, "action": raw}):
        try:
            parse_manifest(wrapped, directory)
        except ExportError as exc:
            assert "\n" not in str(exc)


@pytest.mark.libero
@pytest.mark.parametrize(
    ("death", "how"),
    [
        ("os.kill(os.getpid(), signal.SIGKILL)", "killed by SIGKILL"),  # what the OOM killer sends
        ("os.kill(os.getpid(), signal.SIGSEGV)", "killed by SIGSEGV"),  # a simulator segfault
        ("os._exit(3)", "exit code 3"),
    ],
)
def test_a_worker_that_dies_mid_episode_costs_only_that_episode(
    pytester: pytest.Pytester, validate_report, death: str, how: str
) -> None:
    state_only_export(pytester.path / "export")
    pytester.makeconftest(
        f"""
        import os, signal, threading

        def pytest_runtest_setup(item):
            # One second into episode 1 (building its env or stepping it), on a worker.
            if item.nodeid.endswith("::ep1") and hasattr(item.config, "workerinput"):
                threading.Timer(1.0, lambda: {death}).start()
        """
    )
    result = pytester.runpytest_subprocess(
        "--vla-export", "export", "--vla-tasks", "libero_spatial:0", "--vla-num-episodes", "3",
        "--vla-max-steps", "3", "-n", "2", "--junitxml", "junit.xml",
    )  # fmt: skip
    assert result.ret == HARNESS_ERROR_EXIT
    assert "replacing crashed worker" in result.stdout.str()
    report = validate_report(pytester.path / "eval_output" / "report.json")
    rows = {row["episode_index"]: row for row in report["episodes"]}
    assert sorted(rows) == [0, 1, 2] and report["partial"] is False
    assert rows[1]["terminal_reason"] == "adapter_error"
    assert f"died while running this episode ({how})" in rows[1]["error_message"]
    assert rows[0]["terminal_reason"] == rows[2]["terminal_reason"] == "timeout"  # the others ran
    cases = [case for suite in JUnitXml.fromfile(str(pytester.path / "junit.xml")) for case in suite]
    assert len(cases) == 3


@pytest.mark.libero
def test_a_worker_stuck_in_native_code_is_replaced_and_the_run_goes_on(
    pytester: pytest.Pytester, validate_report
) -> None:
    # The preflight's queries (seed 0, episode 0, query 0: the synthetic and the real observation's)
    # pass; every episode's (seed 7) hangs.
    first = noise_tensor(NoiseInput("noise", (1,)), 0, TaskSpec("libero_spatial", 0, "", 220), 0, 0)
    inputs = {"state": {"source": "state"}, "noise": {"source": "noise", "shape": [1]}}
    write_export(pytester.path / "export", hanging_policy(float(first[0])), inputs)
    result = pytester.runpytest_subprocess(
        "--vla-export", "export", "--vla-tasks", "libero_spatial:0", "--vla-num-episodes", "2",
        "--vla-episode-timeout", "15", "-n", "2",
    )  # fmt: skip
    assert result.ret == FAILED  # timeouts are failures of the policy, not harness errors
    rows = validate_report(pytester.path / "eval_output" / "report.json")["episodes"]
    assert sorted(row["episode_index"] for row in rows) == [0, 1]
    for row in rows:
        assert row["terminal_reason"] == "timeout"
        assert row["error_message"].startswith("wall-clock timeout: stuck past 15 s inside the simulator or the model")


# --- --vla-resume ------------------------------------------------------------------------------


@pytest.mark.libero
def test_resume_runs_only_what_the_report_lacks_and_keeps_the_rest(pytester: pytest.Pytester, validate_report) -> None:
    state_only_export(pytester.path / "export")
    common = ["--vla-export", "export", "--vla-tasks", "libero_spatial:0", "--vla-max-steps", "2", "-p", "no:xdist"]
    pytester.runpytest_subprocess(*common, "--vla-num-episodes", "1").assert_outcomes(failed=1)
    first = validate_report(pytester.path / "eval_output" / "report.json")
    resumed = pytester.runpytest_subprocess(*common, "--vla-num-episodes", "3", "--vla-resume")
    resumed.assert_outcomes(failed=2)  # episodes 1 and 2 only
    resumed.stdout.fnmatch_lines(["vla: --vla-resume: 1 finished episodes of *report.json kept, 2 to run"])
    report = validate_report(pytester.path / "eval_output" / "report.json")
    assert [row["episode_index"] for row in report["episodes"]] == [0, 1, 2] and report["partial"] is False
    assert report["episodes"][0] == first["episodes"][0]  # unchanged
    # pytest's own --lf still works beside it.
    rerun = pytester.runpytest_subprocess(*common, "--vla-num-episodes", "3", "--lf", "--collect-only", "-q")
    assert "libero/libero_spatial:0::ep2" in rerun.stdout.str()


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (["--vla-seed", "8"], "was made with seed 7, this run has 8"),
        (["--vla-max-steps", "3"], "was made under another protocol: max_steps_override was 2, now 3"),
        ([], "was made with a different export (changed: 'model.onnx')"),
    ],
)
def test_resume_refuses_another_export_or_protocol(pytester: pytest.Pytester, change: list[str], message: str) -> None:
    export = state_only_export(pytester.path / "export")
    output = pytester.path / "eval_output"
    output.mkdir()
    report = written({"suite": "libero", "seed": 7, "protocol": {"max_steps_override": 2}, "task_results": [],
                      "episodes": []})  # fmt: skip
    report["env"]["export_files"] = report["env"]["policy"]["export_files"] = export_files(export)
    if not change:  # the export changed since
        state_only_export(export, seed=1)
    else:
        from pytest_vla.suites.libero import LiberoSuite

        report["protocol"] = {**LiberoSuite().protocol(), "max_steps_override": 2}
    (output / "report.json").write_text(json.dumps(report))
    result = pytester.runpytest_subprocess(
        "--vla-export", "export", "--vla-tasks", "libero_spatial:0", "--vla-max-steps", "2", "--vla-resume", *change
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    (line,) = [line for line in result.stderr.lines if line.startswith("ERROR: ")]
    assert line.startswith("ERROR: --vla-resume: ") and message in line


ROW = st.fixed_dictionaries(
    {"task_id": st.sampled_from(["libero_spatial", ""]), "task_index": st.integers(-1, 3),
     "episode_index": st.integers(0, 3), "success": st.booleans(),
     "terminal_reason": st.sampled_from(["success", "timeout", "adapter_error", "crashed"])},
    optional={"n_steps": st.integers(0, 5)},
)  # fmt: skip


@settings(max_examples=300, deadline=None)
@given(raw=JSON, rows=st.lists(ROW | JSON, max_size=4))
def test_any_earlier_report_is_resumed_or_refused_in_one_line(
    tmp_path_factory: pytest.TempPathFactory, raw: Any, rows: list[Any]
) -> None:
    from pytest_vla.errors import ReportError
    from pytest_vla.report.reader import compatible_rows, load_report

    path = tmp_path_factory.getbasetemp() / "resume_fuzz.json"
    files = [{"name": "model.onnx", "sha256": "0" * 64}]
    for report in (
        raw,
        {"suite": "libero", "seed": 7, "protocol": {}, "env": {"export_files": files}, "episodes": raw},
        {"suite": "libero", "seed": 7, "protocol": {}, "env": {"export_files": files}, "episodes": rows},
    ):
        path.write_text(json.dumps(report))
        try:
            kept = compatible_rows(
                path,
                load_report(path),
                suite="libero",
                seed=7,
                protocol={},
                policy={"kind": "onnx-export", "export_files": files},
            )
        except ReportError as exc:  # one line per problem
            assert exc.problems and all("\n" not in problem for problem in exc.problems)
        else:  # a kept row is one the controller can key and judge
            assert kept == report["episodes"]
            for row in kept:
                EpisodeId.of_row(row)
                assert TerminalReason(row["terminal_reason"]) and isinstance(row["success"], bool)


# --- flaky and known-bad tasks -----------------------------------------------------------------


@pytest.mark.libero
def test_flaky_reruns_and_xfail_through_a_hook(pytester: pytest.Pytester, validate_report) -> None:
    pytest.importorskip("pytest_rerunfailures")
    state_only_export(pytester.path / "export")
    example = (Path(__file__).parent.parent / "conftest_examples" / "flaky_tasks_conftest.py").read_text()
    example = example.replace('{"libero_10:3"}', '{"libero_spatial:0"}')
    example = example.replace('{"libero_90:41": ', '{"libero_spatial:1": ')
    pytester.makeconftest(example)
    result = pytester.runpytest_subprocess(
        "--vla-export", "export", "--vla-tasks", "libero_spatial:0,libero_spatial:1", "--vla-num-episodes", "1",
        "--vla-max-steps", "2", "-p", "no:xdist", "--junitxml", "junit.xml",
    )  # fmt: skip
    outcomes = result.parseoutcomes()
    assert (outcomes["failed"], outcomes["rerun"], outcomes["xfailed"]) == (1, 2, 1)
    assert result.ret == FAILED  # the flaky one still failed on its last attempt
    rows = {
        row["task_index"]: row for row in validate_report(pytester.path / "eval_output" / "report.json")["episodes"]
    }
    assert (rows[0]["attempt"], rows[1]["attempt"]) == (3, 1)  # 2 reruns: the third attempt decided
    cases = [case for suite in JUnitXml.fromfile(str(pytester.path / "junit.xml")) for case in suite]
    assert sorted((case.classname, case.name) for case in cases) == [
        ("libero.libero_spatial:0", "ep0"),
        ("libero.libero_spatial:1", "ep0"),
    ]


def test_expected_failures_do_not_fail_the_run() -> None:
    rows = _rows("success", "timeout", "bddl_failure")
    for row, index in zip(rows, range(3), strict=True):
        row.update(task_id="libero_spatial", task_index=index, episode_index=0)
    known_bad = {EpisodeId("libero_spatial", 1, 0), EpisodeId("libero_spatial", 2, 0)}
    assert exit_status(FAILED, RunVerdict(rows, expected_failures=known_bad)) == OK
    assert (
        exit_status(FAILED, RunVerdict(rows, expected_failures={EpisodeId("libero_spatial", 1, 0)}))
        == HARNESS_ERROR_EXIT
    )


# --- GPU pinning --------------------------------------------------------------------------------


@pytest.mark.libero
def test_workers_are_pinned_to_gpus_and_a_replacement_keeps_its_slot(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, validate_report
) -> None:
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    state_only_export(pytester.path / "export")
    pytester.makeconftest(
        """
        import os
        from pathlib import Path

        def pytest_configure(config):
            if hasattr(config, "workerinput"):
                worker = config.workerinput["workerid"]
                Path(f"{worker}.device").write_text(os.environ.get("CUDA_VISIBLE_DEVICES", "unset"))

        def pytest_runtest_setup(item):
            # gw1 dies once, at its first episode; xdist starts gw2 from the same spec.
            if getattr(item.config, "workerinput", {}).get("workerid") == "gw1":
                os._exit(3)
        """
    )
    result = pytester.runpytest_subprocess(
        "--vla-export", "export", "--vla-tasks", "libero_spatial:0", "--vla-num-episodes", "4",
        "--vla-max-steps", "2", "-n", "2",
    )  # fmt: skip
    result.stdout.fnmatch_lines(["vla: workers pinned to GPUs (gw0: 3, gw1: 5)"])
    devices = {path.stem: path.read_text() for path in pytester.path.glob("gw*.device")}
    assert devices["gw0"] == "3" and devices["gw1"] == "5" and devices["gw2"] == "5"
    rows = validate_report(pytester.path / "eval_output" / "report.json")["episodes"]
    # Every row names the device of the worker that ran it (or died with it), not the controller's list.
    assert len(rows) == 4 and {row["cuda_visible_devices"] for row in rows} <= {"3", "5"}
    assert "5" in {row["cuda_visible_devices"] for row in rows if row["terminal_reason"] == "adapter_error"}
