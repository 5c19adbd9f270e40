"""The simulator preflight through the fake suite: each failure class provoked, reuse, the fixture, the estimate.

The fake suite's ``FAKE_PREFLIGHT`` faults act only in the preflight's own process, so every
failure here is found by the real probe, its real timeouts and the real version metadata.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_vla.export.manifest import NoiseInput
from pytest_vla.policy.feeds import noise_tensor
from pytest_vla.report.schema import TaskSpec
from pytest_vla.rollout.threads import available_cpus
from tests.conftest import FAKE_SUITE
from tests.models import camera_export, hanging_policy, state_only_export, write_export

FAILURES = {
    "prompt": ("input-hang", "importing the simulation stack: EOFError: EOF when reading a line"),
    "import_error": (
        "import-error",
        "importing the simulation stack: ImportError: cannot import name 'single_arm_env'*",
    ),
    "crash": ("import-error", "the preflight's process died while checking fake:0 settles (exit code 11)*"),
    "nan_state": ("export-invalid", "*export: on the first real observation: output 'actions' holds non-finite*"),
}


def _preflight_failure(result: pytest.RunResult, pytester: pytest.Pytester, validate_report) -> dict[str, Any]:
    """The failure as the user sees it: exit 4, one line, no episode, report.json saying why."""
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    assert not (pytester.path / "resets.log").exists()  # no episode started
    report = validate_report(pytester.path / "eval_output" / "report.json")
    assert report["episodes"] == [] and report["preflight"]["passed"] is False
    return report["preflight"]


@pytest.mark.parametrize("fault", FAILURES)
def test_each_failure_stops_the_run_before_any_episode(
    fake, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, validate_report, fault: str
) -> None:
    monkeypatch.setenv("FAKE_PREFLIGHT", json.dumps({"*": fault}))
    result = fake({}, "--vla-tasks", "fake:0,fake:1")
    failure, message = FAILURES[fault]
    preflight = _preflight_failure(result, pytester, validate_report)
    result.stderr.fnmatch_lines([f"ERROR: preflight failed ?{failure}?: {message}; remedy: *"])
    assert preflight["failure"] == failure and preflight["remedy"]
    if failure == "input-hang":  # the suite's own remedy for the class, not the generic one
        assert preflight["remedy"] == "answer the fake suite's question once by hand"


# With several workers the sweep checks as many tasks at once, in processes of its own.
SWEEP_PROCESSES = [[], pytest.param(["-n", "2"], marks=pytest.mark.skipif(available_cpus() < 2, reason="1 CPU"))]


@pytest.mark.parametrize("workers", SWEEP_PROCESSES)
def test_the_settle_check_covers_every_selected_task(
    fake, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, validate_report, workers: list[str]
) -> None:
    # Only the third task's goal object falls after its reset: found without naming that task.
    monkeypatch.setenv("FAKE_PREFLIGHT", json.dumps({"2": "drift"}))
    result = fake({}, "--vla-tasks", "fake", *workers)
    preflight = _preflight_failure(result, pytester, validate_report)
    assert preflight["failure"] == "scene-settle"
    result.stderr.fnmatch_lines([
        "ERROR: preflight failed ?scene-settle?: fake:2 episode 0: fake_bowl_1 moved 20.0 cm in 10 idle steps *"
    ])  # fmt: skip


@pytest.mark.parametrize("workers", SWEEP_PROCESSES)
def test_the_sweep_reports_every_task_in_run_order(fake, pytester: pytest.Pytester, workers: list[str]) -> None:
    result = fake({}, "--vla-tasks", "fake", "--vla-num-episodes", "1", "-p", "no:cacheprovider", *workers)
    result.stdout.fnmatch_lines(["vla: preflight passed in *: fake:0 built and reset, 4 task(s) at rest*"])
    report = json.loads((pytester.path / "eval_output" / "report.json").read_text())
    assert report["preflight"]["settled_tasks"] == ["fake:0", "fake:1", "fake:2", "fake:3"]


@pytest.mark.skipif(available_cpus() < 2, reason="a sweep in processes of its own needs 2 CPUs")
@pytest.mark.parametrize(
    ("fault", "failure", "message"),
    [
        ("crash", "import-error", "a process checking *fake:3 settles died; remedy: *"),
        ("hang_build", "osmesa-compile-hang", "checking fake:3 settles took longer than --vla-preflight-timeout 2 s*"),
    ],
)
def test_a_sweep_process_that_dies_or_hangs_is_named(
    fake, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, validate_report, fault: str, failure: str,
    message: str,
) -> None:  # fmt: skip
    monkeypatch.setenv("FAKE_PREFLIGHT", json.dumps({"3": fault}))
    result = fake({}, "--vla-tasks", "fake", "-n", "2", "--vla-preflight-timeout", "2")
    assert _preflight_failure(result, pytester, validate_report)["failure"] == failure
    result.stderr.fnmatch_lines([f"ERROR: preflight failed ?{failure}?: {message}"])


def test_a_shard_checks_its_own_tasks(fake, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_PREFLIGHT", json.dumps({"0": "drift"}))
    result = fake({}, "--vla-tasks", "fake", "--vla-shard", "1/2", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # its episodes ran (and timed out): task 0 is not its own
    result.stdout.fnmatch_lines(["vla: preflight passed in *: fake:2 built and reset, 2 task(s) at rest*"])


@pytest.mark.parametrize(
    ("fault", "stage", "failure"),
    [("hang_import", "importing the simulation stack", "input-hang"), ("hang_build", "checking fake:0 settles",
                                                                       "osmesa-compile-hang")],
)  # fmt: skip
def test_a_hung_stage_is_ended_at_the_timeout_and_named(
    fake, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, validate_report, fault: str, stage: str,
    failure: str,
) -> None:  # fmt: skip
    monkeypatch.setenv("FAKE_PREFLIGHT", json.dumps({"*": fault}))
    result = fake({}, "--vla-tasks", "fake:0", "--vla-preflight-timeout", "2")
    assert _preflight_failure(result, pytester, validate_report)["failure"] == failure
    result.stderr.fnmatch_lines([f"ERROR: preflight failed ?{failure}?: {stage} took longer than "
                                 "--vla-preflight-timeout 2 s; its last output: *"])  # fmt: skip
    if fault == "hang_import":  # the prompt the stack was waiting on is shown
        result.stderr.fnmatch_lines(["*its last output: Do you want to specify a custom path*"])


def test_an_export_stuck_on_the_real_observation_is_ended_and_named(
    fake, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, validate_report
) -> None:
    # It answers the synthetic (zero) state; the real observation's state is not zero.
    first = noise_tensor(NoiseInput("noise", (1,)), 0, TaskSpec("fake", 0, "", 5), 0, 0)  # the checks draw seed 0
    inputs = {"state": {"source": "state"}, "noise": {"source": "noise", "shape": [1]}}
    write_export(pytester.path / "export", hanging_policy(float(first[0]), on_state=True), inputs)
    monkeypatch.setenv("FAKE_PREFLIGHT", json.dumps({"*": "busy_state"}))
    result = fake({}, "--vla-tasks", "fake:0", "--vla-preflight-timeout", "3")
    assert _preflight_failure(result, pytester, validate_report)["failure"] == "export-invalid"
    result.stderr.fnmatch_lines([
        "ERROR: preflight failed ?export-invalid?: running the export on fake:0's first observation took longer "
        "than --vla-preflight-timeout 3 s*"
    ])  # fmt: skip


@pytest.mark.parametrize(
    ("fault", "backend", "failure", "message"),
    [
        ("render_error", "egl", "egl-device", "building fake:0 with cameras agentview: EnvFailure: eglInitialize*"),
        (
            "blank",
            "osmesa",
            "egl-black-frames",
            "camera agentview of fake:0 renders a blank frame (every pixel about 0)*",
        ),
    ],
)
def test_rendering_failures_are_found_on_a_real_frame(
    fake, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, validate_report, fault: str, backend: str,
    failure: str, message: str,
) -> None:  # fmt: skip
    camera_export(pytester.path / "export", size=8)
    monkeypatch.setenv("FAKE_PREFLIGHT", json.dumps({"*": fault}))
    monkeypatch.setenv("MUJOCO_GL", backend)
    result = fake({}, "--vla-tasks", "fake:0")
    assert _preflight_failure(result, pytester, validate_report)["failure"] == failure
    result.stderr.fnmatch_lines([f"ERROR: preflight failed ?{failure}?: {message}"])


def test_video_alone_makes_the_preflight_render(fake, pytester: pytest.Pytester, monkeypatch, validate_report) -> None:
    monkeypatch.setenv("FAKE_PREFLIGHT", json.dumps({"*": "blank"}))
    assert fake({}, "--vla-tasks", "fake:0").ret == pytest.ExitCode.TESTS_FAILED  # state-only: nothing rendered
    (pytester.path / "resets.log").unlink()
    shutil.rmtree(pytester.path / "eval_output")  # a report with results would be kept
    result = fake({}, "--vla-tasks", "fake:0", "--vla-video", "all", "-p", "no:cacheprovider")
    assert _preflight_failure(result, pytester, validate_report)["failure"] == "egl-black-frames"


def test_versions_outside_the_window_are_named_with_the_fix(
    fake, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, validate_report
) -> None:
    monkeypatch.setenv("FAKE_REQUIREMENTS", json.dumps({"pytest": "<1"}))
    result = fake({}, "--vla-tasks", "fake:0")
    assert _preflight_failure(result, pytester, validate_report)["failure"] == "dep-version-conflict"
    version = subprocess.run([sys.executable, "-c", "import pytest; print(pytest.__version__)"],
                             capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    result.stderr.fnmatch_lines([
        f"ERROR: preflight failed ?dep-version-conflict?: pytest {version} is installed; the protocol is defined on "
        "pytest<1; remedy: pip install 'pytest<1'"
    ])  # fmt: skip


def test_a_stack_package_whose_own_pins_are_broken_is_named(
    fake, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, validate_report
) -> None:
    # An installed (dist-info only) stack package that declares numpy<2, as old LIBERO pins did.
    info = tmp_path / "site" / "oldstack-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: oldstack\nVersion: 1.0\nRequires-Dist: numpy<2\n"
                                   "Requires-Dist: sphinx; extra == 'docs'\n")  # fmt: skip
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "site"))
    monkeypatch.setenv("FAKE_REQUIREMENTS", json.dumps({"oldstack": ">=1"}))
    result = fake({}, "--vla-tasks", "fake:0")
    assert _preflight_failure(result, pytester, validate_report)["failure"] == "dep-version-conflict"
    result.stderr.fnmatch_lines([
        "ERROR: preflight failed ?dep-version-conflict?: numpy * is installed; oldstack 1.0 requires numpy<2; "
        "remedy: pip install 'numpy<2'"
    ])  # fmt: skip


def test_an_earlier_report_with_results_is_kept_when_the_preflight_fails(
    fake, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, validate_report
) -> None:
    assert fake({"0": "succeed"}, "--vla-tasks", "fake:0").ret == pytest.ExitCode.OK
    before = (pytester.path / "eval_output" / "report.json").read_text()
    monkeypatch.setenv("FAKE_PREFLIGHT", json.dumps({"*": "import_error"}))
    result = fake({}, "--vla-tasks", "fake:0", "--vla-resume", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert (pytester.path / "eval_output" / "report.json").read_text() == before


def test_a_passed_preflight_is_reused_until_something_it_depends_on_changes(
    fake, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, validate_report
) -> None:
    first = fake({}, "--vla-tasks", "fake:0")
    first.stdout.fnmatch_lines(["vla: preflight passed in * s: fake:0 built and reset, 1 task(s) at rest *"])
    # The same run again: the preflight's process is not started (it would crash now).
    monkeypatch.setenv("FAKE_PREFLIGHT", json.dumps({"*": "crash"}))
    again = fake({}, "--vla-tasks", "fake:0")
    again.stdout.fnmatch_lines(["vla: preflight reused from an identical earlier run: fake:0 built and reset*"])
    assert validate_report(pytester.path / "eval_output" / "report.json")["preflight"]["reused"] is True
    # Another export (its hashes), another render backend, no cache: a fresh preflight.
    state_only_export(pytester.path / "export", seed=5)
    assert fake({}, "--vla-tasks", "fake:0").ret == pytest.ExitCode.USAGE_ERROR
    monkeypatch.delenv("FAKE_PREFLIGHT")
    fake({}, "--vla-tasks", "fake:0").stdout.fnmatch_lines(["vla: preflight passed in *"])
    monkeypatch.setenv("MUJOCO_GL", "egl")
    fake({}, "--vla-tasks", "fake:0").stdout.fnmatch_lines(["vla: preflight passed in *MUJOCO_GL=egl*"])


def _cached_preflights(pytester: pytest.Pytester) -> list[Path]:
    return sorted((pytester.path / ".pytest_cache" / "v" / "vla" / "preflight").iterdir())


@pytest.mark.parametrize(
    "entry",
    [
        pytest.param(lambda entry: {**entry, "stored_at": entry["stored_at"] - 25 * 3600}, id="a day old"),
        pytest.param(lambda entry: {**entry, "stored_at": entry["stored_at"] + 3600}, id="from the future"),
        pytest.param(lambda entry: {"stored_at": entry["stored_at"], "result": {"passed": True}}, id="truncated"),
        pytest.param(lambda entry: entry["result"], id="an older format"),
        pytest.param(lambda entry: [1, 2], id="not a mapping"),
    ],
)
def test_a_cached_preflight_that_is_stale_or_malformed_means_a_fresh_one(
    fake, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, entry
) -> None:
    fake({}, "--vla-tasks", "fake:0").stdout.fnmatch_lines(["vla: preflight passed in *"])
    (cached,) = _cached_preflights(pytester)
    cached.write_text(json.dumps(entry(json.loads(cached.read_text()))))
    monkeypatch.setenv("FAKE_PREFLIGHT", json.dumps({"*": "crash"}))
    result = fake({}, "--vla-tasks", "fake:0")  # the probe runs again, and finds the crash
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    result.stderr.fnmatch_lines(["ERROR: preflight failed ?import-error?: *"])


def test_an_unreadable_cached_preflight_is_said_in_one_line(fake, pytester: pytest.Pytester) -> None:
    fake({}, "--vla-tasks", "fake:0")
    (cached,) = _cached_preflights(pytester)
    cached.write_text(json.dumps({"stored_at": "yesterday", "result": {}}))
    result = fake({}, "--vla-tasks", "fake:0")
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # the fake episode runs out of steps: it ran
    result.stdout.fnmatch_lines(["vla: preflight passed in *", "*VlaWarning: the cached preflight result is unreadable "
                                 "(ValueError: could not convert string to float: 'yesterday'): running a fresh "
                                 "preflight"])  # fmt: skip


def test_a_cached_preflight_does_not_vouch_for_another_host(
    fake, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # In this process, where the host's name can be changed: the same project seen from another node.
    first = fake({}, "--vla-tasks", "fake:0", subprocess=False)
    first.stdout.fnmatch_lines(["vla: preflight passed in *"])
    fake({}, "--vla-tasks", "fake:0", subprocess=False).stdout.fnmatch_lines(["vla: preflight reused *"])
    monkeypatch.setattr(platform, "node", lambda: "another-node")
    fake({}, "--vla-tasks", "fake:0", subprocess=False).stdout.fnmatch_lines(["vla: preflight passed in *"])


def test_a_cached_preflight_is_not_reused_once_the_driver_libraries_change(
    fake, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    drivers = tmp_path / "drivers"
    drivers.mkdir()
    (drivers / "libEGL_nvidia.so.0").write_bytes(b"550.54")
    monkeypatch.setenv("LD_LIBRARY_PATH", str(drivers))
    fake({}, "--vla-tasks", "fake:0").stdout.fnmatch_lines(["vla: preflight passed in *"])
    fake({}, "--vla-tasks", "fake:0").stdout.fnmatch_lines(["vla: preflight reused *"])
    (drivers / "libEGL_nvidia.so.0").write_bytes(b"560.35.03")  # the driver updated in place
    fake({}, "--vla-tasks", "fake:0").stdout.fnmatch_lines(["vla: preflight passed in *"])


def test_collect_only_needs_no_simulator(fake, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_PREFLIGHT", json.dumps({"*": "crash"}))
    result = fake({}, "--vla-tasks", "fake:0", "--collect-only", "-q")
    assert result.ret == pytest.ExitCode.OK
    assert "preflight" not in result.stdout.str()


USER_TEST = """
import json, os

def test_timings(vla_preflight, worker_id):
    assert vla_preflight.passed and vla_preflight.failure is None
    assert vla_preflight.timings.step_s >= 0 and vla_preflight.settled_tasks == ("fake:0", "fake:1")
    with open(f"seen-{worker_id}-{os.getpid()}.json", "w") as seen:
        json.dump({"elapsed_s": vla_preflight.elapsed_s, "timings": vla_preflight.timings.step_s}, seen)
"""


@pytest.mark.parametrize("workers", [[], ["-n", "2"]])
def test_a_users_test_gets_the_one_preflight_result(fake, pytester: pytest.Pytester, workers: list[str]) -> None:
    pytester.makepyfile(test_user=USER_TEST)
    run = ["--vla-tasks", "fake:0,fake:1", "--vla-num-episodes", "1", "-p", "no:cacheprovider", *workers]
    result = fake({}, "test_user.py", *run)
    result.assert_outcomes(passed=1, failed=2)  # the user's test passed; the two episodes timed out
    seen = {path.read_text() for path in pytester.path.glob("seen-*.json")}
    assert len(seen) == 1  # whichever process ran it got the controller's result
    assert (pytester.path / "eval_output" / "preflight.log").is_file()  # one probe, its log beside the report


def test_the_fixture_skips_when_nothing_is_evaluated(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_needs_it(vla_preflight): pass")
    result = pytester.runpytest("-rs")
    result.assert_outcomes(skipped=1)
    result.stdout.fnmatch_lines(["*vla_preflight: pytest-vla is not evaluating in this run (no --vla-export)*"])


def test_the_cost_preview_runs_no_episode(fake, pytester: pytest.Pytester) -> None:
    result = fake({}, "--vla-tasks", "fake", "--vla-num-episodes", "3", "--vla-cost-preview",
                  "--vla-gpu-hourly-usd", "2.5", "-p", "no:cacheprovider")  # fmt: skip
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines([
        "vla: preflight passed in *: fake:0 built and reset, 1 task(s) at rest*",  # no settle sweep for a preview
        "vla:   fake: 4 tasks x 3 episodes, 5 steps each at most",
        "vla: estimate: 4 tasks, 12 episodes on 1 worker(s): about 0m0?s wall time, $0.00 at $2.5/h x 1",
        "vla:   assumes every episode runs its full step budget*",
    ])  # fmt: skip
    assert not (pytester.path / "resets.log").exists()
    assert not (pytester.path / "eval_output" / "report.json").exists()


def test_a_run_over_the_cost_limit_needs_a_yes(fake, pytester: pytest.Pytester, validate_report) -> None:
    dear = ["--vla-tasks", "fake:0", "--vla-gpu-hourly-usd", "1e12", "--vla-max-cost-usd", "1"]
    refused = fake({"0": "succeed"}, *dear)
    assert refused.ret == pytest.ExitCode.USAGE_ERROR
    refused.stderr.fnmatch_lines([
        "ERROR: estimated cost $* is above --vla-max-cost-usd 1 and no one is here to confirm: pass --vla-yes*"
    ])  # fmt: skip
    assert not (pytester.path / "resets.log").exists()
    assert fake({"0": "succeed"}, *dear, "--vla-yes").ret == pytest.ExitCode.OK
    cost = validate_report(pytester.path / "eval_output" / "report.json")["cost"]
    assert cost["total_usd"] > 1 and cost["hourly_usd"] == 1e12 and cost["by_task"].keys() == {"fake"}


@pytest.mark.parametrize(("answer", "status"), [("y\n", pytest.ExitCode.OK), ("n\n", pytest.ExitCode.USAGE_ERROR)])
def test_a_terminal_is_asked_before_an_expensive_run(pytester: pytest.Pytester, answer: str, status: int) -> None:
    pytester.makeconftest(FAKE_SUITE)
    state_only_export(pytester.path / "export")
    primary, secondary = os.openpty()
    env = {**os.environ, "FAKE_SUITE_SCRIPT": json.dumps({"0": "succeed"})}
    args = ["--vla-export", "export", "--vla-suite", "fake", "--vla-tasks", "fake:0", "--vla-gpu-hourly-usd", "1e12",
            "-p", "no:cacheprovider"]  # fmt: skip
    process = subprocess.Popen([sys.executable, "-m", "pytest", *args], cwd=pytester.path, env=env, stdin=secondary,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    os.write(primary, answer.encode())
    output, _ = process.communicate(timeout=120)
    os.close(primary), os.close(secondary)
    assert process.returncode == status, output.decode()
    assert b"above --vla-max-cost-usd 50. Run it? [y/N]" in output


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--vla-preflight-timeout", "0", "--vla-preflight-timeout must be a positive number of seconds, got '0'"),
        ("--vla-gpu-hourly-usd", "-1", "--vla-gpu-hourly-usd must be a price of 0 or more, got '-1'"),
        ("--vla-max-cost-usd", "lots", "--vla-max-cost-usd must be a price of 0 or more, got 'lots'"),
    ],
)
def test_bad_preflight_options_are_named(fake, option: str, value: str, message: str) -> None:
    result = fake({}, option, value)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])
