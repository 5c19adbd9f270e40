"""The controller's logic (exit statuses, resume, JUnit, crash rows, interrupts, scheduling) on a scripted suite.

The suite comes from ``tests/fake_suite.py`` through the public ``pytest_vla_make_suite`` hook, so
these runs take seconds and need no simulator; what LIBERO itself does is tested in the e2e files.
"""

from __future__ import annotations

import json
import re
import signal
import sys
from pathlib import Path
from typing import Any

import pytest
from junitparser.xunit2 import JUnitXml

from pytest_vla.controller.exit_status import HARNESS_ERROR_EXIT
from pytest_vla.controller.placement import place_workers
from pytest_vla.controller.xdist import _signal_name
from pytest_vla.errors import ExportError
from pytest_vla.export.files import file_digest
from pytest_vla.rollout.threads import THREAD_VARIABLES
from tests.junit_xml import episode_facts
from tests.models import state_only_export

FAKE_SUITE = (Path(__file__).parent / "fake_suite.py").read_text()
OK, FAILED, INTERRUPTED = pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED, pytest.ExitCode.INTERRUPTED


def _report(pytester: pytest.Pytester, validate_report) -> dict[str, Any]:
    return validate_report(pytester.path / "eval_output" / "report.json")


def _reasons(report: dict[str, Any]) -> dict[str, str]:
    return {f"{r['task_index']}:{r['episode_index']}": r["terminal_reason"] for r in report["episodes"]}


def test_a_suite_from_a_plugin_runs_like_a_built_in_one(fake, pytester: pytest.Pytester, validate_report) -> None:
    result = fake({"0": "succeed"}, "--vla-tasks", "fake:0,fake:1", "--vla-num-episodes", "2", "-p", "no:xdist")
    result.assert_outcomes(passed=2, failed=2)
    assert result.ret == FAILED
    assert _reasons(_report(pytester, validate_report)) == {"0:0": "success", "0:1": "success", "1:0": "timeout",
                                                            "1:1": "timeout"}  # fmt: skip


def test_each_row_says_how_much_of_the_goal_held_and_the_tallies_average_it(fake, pytester, validate_report) -> None:
    import scipy.stats

    result = fake({"0": "succeed", "1": "drop"}, "--vla-tasks", "fake:0,fake:1,fake:2", "--vla-num-episodes", "2",
                  "-p", "no:xdist")  # fmt: skip
    result.assert_outcomes(passed=2, failed=4)
    result.stdout.fnmatch_lines([
        "aggregate * 2/6   33.3% [[]  9.7,  70.0]   progress  50% [[]  3,  97]",
        "failed episodes by the furthest stage reached: untouched 2, grasped 2",
        "side effects: 2 of 6 episodes disturbed an object their goal does not name (fake_cup_1 2)",
    ])  # fmt: skip
    report = _report(pytester, validate_report)
    grasped, placed = "(grasped fake_bowl_1)", "(on fake_bowl_1 fake_plate_1)"
    by_task = {row["task_index"]: (row["progress"], row["stage"], row["goal"]) for row in report["episodes"]}
    assert by_task == {
        0: (1.0, "at_goal", {"conditions": [grasped, placed], "satisfied_at_end": [grasped, placed],
                             "most_satisfied": [grasped, placed], "most_satisfied_step": 2,
                             "furthest_stages": {"fake_bowl_1": "at_goal"}}),
        # Held once, then dropped: the end alone would say nothing.
        1: (0.5, "grasped", {"conditions": [grasped, placed], "satisfied_at_end": [], "most_satisfied": [grasped],
                             "most_satisfied_step": 1, "furthest_stages": {"fake_bowl_1": "grasped"}}),
        2: (0.0, "untouched", {"conditions": [grasped, placed], "satisfied_at_end": [], "most_satisfied": [],
                               "most_satisfied_step": 0, "furthest_stages": {"fake_bowl_1": "untouched"}}),
    }  # fmt: skip
    assert [(t["mean_progress"], t["n_progress"], t["progress_ci95"]) for t in report["task_results"]] == [
        (1.0, 2, [1.0, 1.0]), (0.5, 2, [0.5, 0.5]), (0.0, 2, [0.0, 0.0])
    ]  # fmt: skip
    # The drop knocked the cup, which the goal does not name, off the table; the spoon stayed put.
    assert [row["side_effects"] for row in report["episodes"]] == [[], [], *[[
        {"object": "fake_cup_1", "moved_m": 0.2154, "fell": True}]] * 2, [], []]  # fmt: skip
    assert [(t["n_side_effects"], t["n_watched"]) for t in report["task_results"]] == [(0, 2), (2, 2), (0, 2)]
    values = [1.0, 1.0, 0.5, 0.5, 0.0, 0.0]
    low, high = scipy.stats.t.interval(0.95, len(values) - 1, loc=0.5, scale=scipy.stats.sem(values))
    aggregate = report["aggregate"]
    assert aggregate["mean_progress"] == 0.5 and aggregate["n_progress"] == 6
    assert aggregate["progress_ci95"] == pytest.approx([low, high], abs=1e-6)


def test_maxfail_is_not_a_pass_even_when_the_rows_seen_meet_the_gate(fake, pytester, validate_report) -> None:
    result = fake({}, "--vla-tasks", "fake:0", "--vla-num-episodes", "3", "--maxfail", "1",
                  "--vla-min-success-rate", "0", "-p", "no:xdist")  # fmt: skip
    assert result.ret == FAILED  # the rows seen meet the gate, but 2 of 3 episodes never ran
    result.stdout.fnmatch_lines(["not run: 2 of 3 selected episodes (first: fake/fake:0::ep1); report.json is partial"])
    assert _report(pytester, validate_report)["partial"] is True


def test_an_error_outside_the_episode_without_a_row_fails_the_run(fake, pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        FAKE_SUITE
        + '\n\ndef pytest_runtest_setup(item):\n    if item.nodeid.endswith("::ep1"):\n'
        + '        raise OSError("disk gone")\n'
    )
    result = fake({"0": "succeed"}, "--vla-tasks", "fake:0", "--vla-num-episodes", "2", "-p", "no:xdist")
    assert result.ret == HARNESS_ERROR_EXIT  # ep0 succeeded, ep1 never produced a result
    result.stdout.fnmatch_lines(["error outside the episode, no result recorded: fake/fake:0::ep1: *disk gone*"])


def test_a_finished_episode_keeps_its_row_when_its_trajectory_cannot_be_saved(fake, pytester, validate_report) -> None:
    (pytester.path / "eval_output").mkdir()
    (pytester.path / "eval_output" / "trajectories").write_text("a file where the directory should be")
    result = fake({"0": "succeed"}, "--vla-tasks", "fake:0", "--vla-num-episodes", "1", "--vla-save-trajectories",
                  "-p", "no:xdist")  # fmt: skip
    result.assert_outcomes(passed=1)
    (row,) = _report(pytester, validate_report)["episodes"]
    assert row["success"] is True and row["trajectory_path"] is None
    assert row["error_message"].startswith("trajectory not saved: ")


@pytest.mark.parametrize("mode", ["loadscope", "loadfile"])
def test_scope_scheduling_gives_each_task_to_one_worker(fake, pytester, validate_report, mode: str) -> None:
    result = fake({}, "--vla-tasks", "fake:0,fake:1", "--vla-num-episodes", "3", "-n", "2", "--dist", mode)
    result.assert_outcomes(failed=6)
    workers: dict[int, set[str]] = {}
    for row in _report(pytester, validate_report)["episodes"]:
        workers.setdefault(row["task_index"], set()).add(row["worker"])
    assert [len(names) for names in workers.values()] == [1, 1] and workers[0] != workers[1]


def test_pytest_randomly_keeps_a_tasks_episodes_together(fake, pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("pytest_randomly")
    monkeypatch.delenv("PYTEST_ADDOPTS", raising=False)
    result = fake({}, "--vla-num-episodes", "4", "-p", "randomly", "-p", "no:xdist",
                  "--randomly-seed", "1", "--collect-only", "-q")  # fmt: skip
    ids = [line for line in result.stdout.lines if line.startswith("fake/")]
    assert ids != sorted(ids)  # randomly did shuffle
    tasks = [nodeid.split("::")[0] for nodeid in ids]
    runs = [task for position, task in enumerate(tasks) if position == 0 or tasks[position - 1] != task]
    assert len(tasks) == 16 and sorted(runs) == [f"fake/fake:{i}" for i in range(4)]  # a run per task


def test_the_controller_releases_the_model_under_xdist(fake, pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        FAKE_SUITE
        + """

def pytest_sessionfinish(session):
    from pathlib import Path

    from pytest_vla.controller.items import PREFLIGHT_POLICY_KEY

    role = session.config.workerinput["workerid"] if hasattr(session.config, "workerinput") else "controller"
    Path(f"{role}.model").write_text(str(PREFLIGHT_POLICY_KEY in session.config.stash))
"""
    )
    fake({}, "--vla-tasks", "fake:0", "--vla-num-episodes", "1", "-n", "1").assert_outcomes(failed=1)
    assert (pytester.path / "controller.model").read_text() == "False"
    fake({}, "--vla-tasks", "fake:0", "--vla-num-episodes", "1", "-p", "no:xdist").assert_outcomes(failed=1)
    assert (pytester.path / "controller.model").read_text() == "True"  # one process: handed to the runner


_LOGGED_BUILDS = """

import inspect

_make_env, _close = FakeSuite.make_env, FakeEnv.close


def _logged_make_env(self, task, *args):
    callers = [frame.function for frame in inspect.stack()]
    if "_prepare_first_env" in callers or "_switch_env" in callers:  # the pytest process, not the probe
        with open("builds.log", "a") as log:
            log.write(f"built {task.key} {'preflight' if '_prepare_first_env' in callers else 'runner'}\\n")
    elif task.index == 1 and os.environ.get("FAKE_SECOND_SCENE_FAILS"):  # the probe, once the run built its env
        deadline = time.monotonic() + 60
        while not os.path.exists("builds.log") and time.monotonic() < deadline:
            time.sleep(0.05)
        raise RuntimeError("the second scene does not load")
    return _make_env(self, task, *args)


def _logged_close(self):
    callers = [frame.function for frame in inspect.stack()]
    if "_close_env" in callers or "_checks_beside_the_simulator" in callers:
        with open("builds.log", "a") as log:
            log.write(f"closed {self.task.key}\\n")
    return _close(self)


FakeSuite.make_env, FakeEnv.close = _logged_make_env, _logged_close
"""


def test_one_process_builds_its_first_env_while_the_preflight_finishes(
    fake, pytester, validate_report, monkeypatch
) -> None:
    pytester.makeconftest(FAKE_SUITE + _LOGGED_BUILDS)
    common = ["--vla-tasks", "fake:0,fake:1", "--vla-num-episodes", "2", "-p", "no:xdist", "-p", "no:cacheprovider"]
    fake({"0": "succeed", "1": "succeed"}, *common).assert_outcomes(passed=4)
    log = pytester.path / "builds.log"
    assert log.read_text().split("\n") == [
        "built fake:0 preflight",
        "closed fake:0",
        "built fake:1 runner",
        "closed fake:1",
        "",
    ]
    rows = _report(pytester, validate_report)["episodes"]
    assert [row["env_construction_s"] > 0 for row in rows] == [True, False, True, False]  # its build is recorded
    # A preflight that fails after that build (the second task's scene does not load) closes it.
    log.unlink()
    monkeypatch.setenv("FAKE_SECOND_SCENE_FAILS", "1")
    failed = fake({"0": "succeed", "1": "succeed"}, *common)
    assert failed.ret == pytest.ExitCode.USAGE_ERROR
    failed.stderr.fnmatch_lines(["*building fake:1 (physics only): RuntimeError: the second scene does not load*"])
    assert log.read_text().split("\n") == ["built fake:0 preflight", "closed fake:0", ""]


# Logs to order.log, in order, each xdist worker's start (with its pid), the preflight's import and
# each episode's reset (not the probe's). The probe's import waits until two workers have started (30 s at most): a
# controller that started its workers only after the preflight would log them after it.
_ORDER_OF_STARTS = """

def _order(event: str) -> None:
    with open(Path(__file__).parent / "order.log", "a") as log:
        log.write(event + "\\n")


def _events() -> list[str]:
    path = Path(__file__).parent / "order.log"
    return path.read_text().splitlines() if path.exists() else []


def pytest_configure(config):
    if hasattr(config, "workerinput"):  # before pytest-vla's own configure, which waits for the plan
        _order(f"worker started {os.getpid()}")


_resolve, _reset = FakeSuite.resolve_tasks, FakeEnv.reset


def _resolve_after_the_workers(self, selection):
    if _in_preflight():
        deadline = time.monotonic() + 30
        while sum(event.startswith("worker started") for event in _events()) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        _order("preflight imported")
    return _resolve(self, selection)


def _logged_reset(self, episode_index):
    if not _in_preflight():
        _order("episode")
    return _reset(self, episode_index)


FakeSuite.resolve_tasks, FakeEnv.reset = _resolve_after_the_workers, _logged_reset
"""
_WORKERS = ["-n", "2", "-p", "no:cacheprovider", "--vla-preflight-timeout", "60"]


def _events(pytester: pytest.Pytester) -> list[str]:
    return (pytester.path / "order.log").read_text().splitlines()


def test_xdist_workers_start_beside_the_preflight_and_run_after_its_verdict(fake, pytester, validate_report) -> None:
    pytester.makeconftest(FAKE_SUITE + "\nfrom pathlib import Path\n" + _ORDER_OF_STARTS)
    result = fake({"0": "succeed"}, "--vla-tasks", "fake:0,fake:1", "--vla-num-episodes", "2", *_WORKERS)
    result.assert_outcomes(passed=2, failed=2)
    events = _events(pytester)
    imported = events.index("preflight imported")
    assert [event.split()[:2] for event in events[:imported]] == [["worker", "started"]] * 2
    assert events[imported + 1 :].count("episode") == 4 and "episode" not in events[:imported]
    # The run's own header lines follow pytest's, which was out before the preflight.
    result.stdout.fnmatch_lines(["vla: suite fake, 2 tasks x 2 episodes = 4 items*", "vla: preflight passed*"])
    assert len(_report(pytester, validate_report)["episodes"]) == 4


def _running(pid: int) -> bool:
    try:  # a zombie (state Z) has exited: only its parent has not reaped it yet
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_failed_preflight_ends_the_workers_started_beside_it(fake, pytester, monkeypatch, validate_report) -> None:
    pytester.makeconftest(FAKE_SUITE + "\nfrom pathlib import Path\n" + _ORDER_OF_STARTS)
    monkeypatch.setenv("FAKE_PREFLIGHT", json.dumps({"*": "drift"}))
    result = fake({"0": "succeed"}, "--vla-tasks", "fake:0,fake:1", "--vla-num-episodes", "2", *_WORKERS)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: preflight failed [[]*]: *"])
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    events = _events(pytester)
    workers = [int(event.split()[-1]) for event in events if event.startswith("worker started")]
    assert len(workers) == 2 and "episode" not in events
    assert not [pid for pid in workers if _running(pid)]
    assert _report(pytester, validate_report)["episodes"] == []


def test_an_env_that_fails_to_close_costs_a_warning_not_the_run(fake, pytester, validate_report) -> None:
    result = fake({"0": "close_error", "1": "succeed"}, "--vla-tasks", "fake:0,fake:1", "--vla-num-episodes", "2",
                  "-p", "no:xdist", "--vla-min-success-rate", "0.5")  # fmt: skip
    result.assert_outcomes(passed=2, failed=2)
    assert result.ret == OK  # the gate held; the final write and the exit status still happened
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    result.stdout.fnmatch_lines(["*closing the env of fake:0 failed: RuntimeError: the simulator would not close*"])
    assert _report(pytester, validate_report)["partial"] is False


@pytest.mark.parametrize(
    ("faults", "episodes", "resets", "kept"),
    [
        ({"0": "interrupt_at_last_step"}, 1, ["0:0"], [(0, 0)]),
        ({"0": "interrupt_at_last_step"}, 2, ["0:0"], [(0, 0)]),
        # The first task's env is built while the preflight finishes: the second task's build is interrupted.
        ({"0": "succeed", "1": "interrupt_at_build"}, 2, ["0:0", "0:1"], [(0, 0), (0, 1), (1, 0)]),
    ],
)
def test_a_ctrl_c_where_no_step_follows_still_stops_the_run(
    fake, pytester, validate_report, faults: dict[str, str], episodes: int, resets: list[str], kept: list[tuple]
) -> None:
    tasks = ",".join(f"fake:{task}" for task in faults)
    result = fake(faults, "--vla-tasks", tasks, "--vla-num-episodes", str(episodes), "-p", "no:xdist")
    assert result.ret == INTERRUPTED  # not dropped (0/1) on the last episode
    log = pytester.path / "resets.log"
    assert (log.read_text().split() if log.exists() else []) == resets  # nor delayed into the next episode
    report = _report(pytester, validate_report)
    # The episode it came in is kept.
    assert [(row["task_index"], row["episode_index"]) for row in report["episodes"]] == kept
    assert report["partial"] is (episodes > 1)


def test_a_sigterm_while_the_run_ends_lets_it_finish_writing(fake, pytester, validate_report) -> None:
    pytester.makeconftest(
        FAKE_SUITE
        + "\n\nimport os, signal\n\n\ndef pytest_terminal_summary():\n    os.kill(os.getpid(), signal.SIGTERM)\n"
    )
    result = fake({"0": "succeed"}, "--vla-tasks", "fake:0", "--vla-num-episodes", "2", "-p", "no:xdist")
    assert result.ret == INTERRUPTED
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    report = _report(pytester, validate_report)
    assert report["partial"] is False and len(report["episodes"]) == 2


def test_ctrl_c_under_xdist_keeps_the_finished_episodes(fake, pytester, validate_report) -> None:
    result = fake({"0": "succeed", "1:0": "interrupt_at_last_step"}, "--vla-tasks", "fake:0,fake:1",
                  "--vla-num-episodes", "2", "-n", "1")  # fmt: skip
    assert result.ret == INTERRUPTED
    report = _report(pytester, validate_report)
    assert report["partial"] is True
    assert {(row["task_index"], row["episode_index"]) for row in report["episodes"]} >= {(0, 0), (0, 1)}


def test_a_watchdog_kill_during_the_env_build_is_a_harness_error(fake, pytester, validate_report) -> None:
    pytester.makeconftest(
        FAKE_SUITE
        + "\n\nimport pytest_vla.rollout.runner, pytest_vla.rollout.watchdog\n"
        + "pytest_vla.rollout.runner.ENV_BUILD_ALLOWANCE_S = 1.0\npytest_vla.rollout.watchdog.GRACE_S = 0.5\n"
    )
    result = fake({"0": "hang_build", "1": "succeed"}, "--vla-tasks", "fake:0,fake:1", "--vla-num-episodes", "1",
                  "-n", "1")  # fmt: skip
    assert result.ret == HARNESS_ERROR_EXIT
    rows = {row["task_index"]: row for row in _report(pytester, validate_report)["episodes"]}
    assert rows[0]["terminal_reason"] == "adapter_error"
    assert rows[0]["error_message"] == "building the env of fake:0 was stuck past 1 s; the watchdog ended worker gw0"
    assert rows[1]["terminal_reason"] == "success"  # the replacement worker went on


def test_a_dead_workers_testcase_carries_the_episode_facts(fake, pytester: pytest.Pytester, validate_junit) -> None:
    result = fake({"0:1": "die"}, "--vla-tasks", "fake:0", "--vla-num-episodes", "3", "-n", "2",
                  "--junitxml", "junit.xml", "--junit-prefix", "ci")  # fmt: skip
    assert result.ret == HARNESS_ERROR_EXIT
    validate_junit(pytester.path / "junit.xml")  # xunit2, pytest's default: no <properties> in a testcase
    cases = {case.name: case for suite in JUnitXml.fromfile(str(pytester.path / "junit.xml")) for case in suite}
    assert sorted(cases) == ["ep0", "ep1", "ep2"] and {case.classname for case in cases.values()} == {"ci.fake.fake:0"}
    facts = {name: episode_facts(case) for name, case in cases.items()}
    assert facts["ep1"]["terminal_reason"] == "adapter_error" and facts["ep1"]["episode_index"] == "1"
    assert facts["ep0"]["terminal_reason"] == "timeout" and facts["ep0"]["stage"] == "untouched"
    assert "stage" not in facts["ep1"]  # its worker died with the episode: nothing is known of its goal


def test_xunit1_keeps_the_episode_facts_as_testcase_properties(fake, pytester: pytest.Pytester) -> None:
    fake({"0": "succeed"}, "--vla-tasks", "fake:0", "--vla-num-episodes", "1", "-p", "no:xdist",
         "--junitxml", "junit.xml", "-o", "junit_family=xunit1")  # fmt: skip
    (case,) = [case for suite in JUnitXml.fromfile(str(pytester.path / "junit.xml")) for case in suite]
    properties = {p.name: p.value for p in case.properties()}
    assert (properties["terminal_reason"], properties["progress"], properties["stage"]) == ("success", "1.0", "at_goal")
    assert properties["side_effects"] == "none"
    assert case.system_out is None


def test_resume_reruns_harness_errors_and_gives_the_verdict_when_nothing_is_left(
    fake, pytester, validate_report
) -> None:
    args = ["--vla-tasks", "fake:0,fake:1", "--vla-num-episodes", "2", "-p", "no:xdist"]
    assert fake({"0": "succeed", "1": "build_error"}, *args).ret == HARNESS_ERROR_EXIT
    resumed = fake({"0": "fail", "1": "succeed"}, *args, "--vla-resume")  # a transient crash, gone now
    resumed.assert_outcomes(passed=2)  # only the errored episodes ran; the successes were kept
    assert resumed.ret == OK
    assert set(_reasons(_report(pytester, validate_report)).values()) == {"success"}
    again = fake({}, *args, "--vla-resume")
    assert again.ret == OK  # nothing left to run: the full report's verdict, not "no tests" (5)
    again.stdout.fnmatch_lines(["vla: --vla-resume: 4 finished episodes of *report.json kept, 0 to run"])


def test_last_failed_updates_the_report_instead_of_replacing_it(fake, pytester, validate_report) -> None:
    args = ["--vla-tasks", "fake:0", "--vla-num-episodes", "3", "-p", "no:xdist"]
    fake({"0": "succeed", "0:1": "fail"}, *args).assert_outcomes(passed=2, failed=1)
    rerun = fake({"0": "succeed"}, *args, "--lf")
    rerun.assert_outcomes(passed=1, deselected=2)
    assert rerun.ret == OK
    report = _report(pytester, validate_report)
    assert _reasons(report) == {"0:0": "success", "0:1": "success", "0:2": "success"} and not report["partial"]


def test_the_finished_hook_fires_once_per_episode_under_reruns(fake, pytester: pytest.Pytester) -> None:
    pytest.importorskip("pytest_rerunfailures")
    pytester.makeconftest(
        FAKE_SUITE
        + """

finished = []

def pytest_vla_episode_finished(config, episode):
    finished.append(episode["attempt"])
    episode["attempt"] = "changed by a hook"

def pytest_sessionfinish(session):
    from pathlib import Path
    Path("finished.json").write_text(__import__("json").dumps(finished))
"""
    )
    result = fake({}, "--vla-tasks", "fake:0", "--vla-num-episodes", "1", "--reruns", "2", "-p", "no:xdist")
    assert result.parseoutcomes()["rerun"] == 2
    assert json.loads((pytester.path / "finished.json").read_text()) == [3]  # once, for the last attempt
    rows = json.loads((pytester.path / "eval_output" / "report.json").read_text())["episodes"]
    assert rows[0]["attempt"] == 3  # the hook got a copy


def test_a_slow_episode_ends_as_a_wall_clock_timeout(fake, pytester: pytest.Pytester, validate_report) -> None:
    result = fake({"0": "slow"}, "--vla-tasks", "fake:0", "--vla-num-episodes", "1", "--vla-max-steps", "1000",
                  "--vla-episode-timeout", "0.5", "-p", "no:xdist")  # fmt: skip
    result.assert_outcomes(failed=1)
    (row,) = _report(pytester, validate_report)["episodes"]
    assert row["terminal_reason"] == "timeout" and row["n_steps"] < 10  # 0.2 s a step: the clock ended it
    assert row["error_message"] == f"wall-clock timeout: not done after 0.5 s ({row['n_steps']} of 1000 policy steps)"


def test_the_export_path_does_not_move_the_rootdir(pytester: pytest.Pytester, tmp_path_factory, monkeypatch) -> None:
    export = state_only_export(tmp_path_factory.mktemp("exports") / "x")  # outside the project directory
    pytester.makeconftest(FAKE_SUITE)
    pytester.makeini("[pytest]\nvla_suite = fake\nvla_tasks = fake:1\nvla_num_episodes = 2\n")
    monkeypatch.setenv("FAKE_SUITE_SCRIPT", "{}")
    result = pytester.runpytest_subprocess("--vla-export", str(export), "--collect-only", "-q", "-p", "no:xdist")
    assert [line for line in result.stdout.lines if "::" in line] == ["fake/fake:1::ep0", "fake/fake:1::ep1"]
    header = pytester.runpytest_subprocess("--vla-export", str(export), "--collect-only", "-p", "no:xdist")
    header.stdout.fnmatch_lines([f"rootdir: {pytester.path}", "configfile: tox.ini"])


def test_the_projects_plugin_options_apply_with_paths_outside_it(
    fake, pytester: pytest.Pytester, tmp_path_factory, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pytest picks an ini from the paths outside first, and had applied its -p options before
    # pytest-vla redid that choice: the project's were dropped, on the controller and on workers.
    pytester.makeini("[pytest]\naddopts = -p no:randomly\nvla_tasks = fake:0\n")
    monkeypatch.delenv("PYTEST_ADDOPTS")
    monkeypatch.setenv("FAKE_SUITE_SCRIPT", "{}")
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    export = state_only_export(elsewhere / "export")
    # Not runpytest_subprocess: the --basetemp it adds is a path inside the project.
    result = pytester.run(sys.executable, "-m", "pytest", "--vla-export", export, "--vla-suite", "fake",
                          "--vla-output", elsewhere / "eval", "-n", "2")  # fmt: skip
    assert "--randomly-seed" not in result.stdout.str()  # pytest-randomly is blocked, as the project says
    assert result.ret == FAILED  # the fake episodes ran, and failed


@pytest.mark.parametrize("option", ["--setup-only", "--setup-plan", "--collect-only"])
def test_listing_options_run_no_episode(fake, pytester: pytest.Pytester, option: str) -> None:
    result = fake({"0": "succeed"}, "--vla-tasks", "fake:0", "--vla-num-episodes", "2", "-p", "no:xdist", option)
    assert result.ret == OK
    result.stdout.fnmatch_lines(["*ep1*"])
    assert not (pytester.path / "resets.log").exists()
    assert not (pytester.path / "eval_output" / "report.json").exists()


@pytest.mark.parametrize(("seed", "message"), [("-1", "got -1"), (str(2**31), f"got {2**31}")])
def test_a_seed_numpy_cannot_take_is_a_usage_error(fake, seed: str, message: str) -> None:
    result = fake({}, "--vla-seed", seed)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"ERROR: --vla-seed must be in 0..{2**31 - 1}, {message}" in result.stderr.str()


def test_small_things_a_review_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert _signal_name(signal.SIGRTMIN + 2) == f"signal {signal.SIGRTMIN + 2}"  # real-time signals have no name
    assert _signal_name(9) == "SIGKILL"
    with pytest.raises(ExportError, match=r"^.*: cannot be read: .*$"):
        file_digest(tmp_path)  # an unreadable export file is one line, not an INTERNALERROR
    monkeypatch.setenv("MUJOCO_GL", "egl")
    monkeypatch.delenv("MUJOCO_EGL_DEVICE_ID", raising=False)
    for name in THREAD_VARIABLES:
        monkeypatch.setenv(name, "3")  # the user's own thread settings are left alone
    specs = [_Spec(popen=True), _Spec(popen=True), _Spec(popen=False)]
    assert place_workers(specs, ["1", "GPU-8e4b"]) == ["1", "GPU-8e4b"]
    assert specs[0].env == {"CUDA_VISIBLE_DEVICES": "1", "MUJOCO_EGL_DEVICE_ID": "1"}
    assert specs[1].env == {"CUDA_VISIBLE_DEVICES": "GPU-8e4b"}  # no UUID where MuJoCo wants an index
    assert specs[2].env == {}  # a remote (ssh) worker has GPUs of its own


class _Spec:
    def __init__(self, popen: bool) -> None:
        self.popen = popen
        self.env: dict[str, str] = {}


def test_a_long_run_shows_each_outcome_and_a_running_tally(fake, pytester: pytest.Pytester) -> None:
    every_episode = "\nimport pytest_vla.controller.progress as progress\nprogress.PROGRESS_EVERY_S = 0\n"
    pytester.makeconftest(FAKE_SUITE + every_episode)
    result = fake({"0": "succeed", "1": "build_error"}, "--vla-tasks", "fake:0,fake:1,fake:2", "--vla-num-episodes",
                  "2", "-n", "2", "-v")  # fmt: skip
    result.stdout.fnmatch_lines(["*PASSED (success, 2 steps, *s) fake/fake:0::ep0*"])
    result.stdout.fnmatch_lines(["*ERROR (bddl_failure, 0 steps, *s) fake/fake:1::ep*"])
    result.stdout.fnmatch_lines(["*FAILED (timeout, 5 steps, *s) fake/fake:2::ep*"])
    tallies = [line for line in result.stdout.lines if line.startswith("vla: ") and "episodes done" in line]
    # Two workers' reports can arrive before either item's logfinish; the newer tally then stands for both.
    done = [int(line.split()[1].split("/")[0]) for line in tallies]
    assert len(tallies) >= 3 and done == sorted(set(done)), tallies
    assert tallies[-1] == "vla: 6/6 episodes done, 2 succeeded (33.3%)"
    assert all(re.search(r", ETA \d+m\d\ds$", line) for line in tallies[:-1])


def test_policy_errors_are_pytest_errors_and_hooks_see_every_episode(fake, pytester, validate_report) -> None:
    # The preflight's query sees the first (zero) state and passes; the query at step 4 overflows.
    state_only_export(pytester.path / "export", overflow=True)
    pytester.makeconftest(FAKE_SUITE + """
seen = []

def pytest_vla_episode_finished(config, episode):
    seen.append(episode["episode_index"])

def pytest_vla_modify_report(config, report):
    report["seen_by_hook"] = sorted(seen)
""")  # fmt: skip
    result = fake({}, "--vla-tasks", "fake:0", "--vla-num-episodes", "2")
    result.assert_outcomes(errors=2)
    assert result.ret == 6  # harness errors: the run could not measure these episodes
    result.stdout.fnmatch_lines(["*fake:0:ep0: adapter_error: policy: at step 4: output 'actions' holds non-finite*"])
    report = _report(pytester, validate_report)
    assert [e["terminal_reason"] for e in report["episodes"]] == ["adapter_error", "adapter_error"]
    assert report["seen_by_hook"] == [0, 1]


# --- the journal, report.json's cadence, the output directory's earlier results ------------------


def test_report_json_is_rewritten_every_few_seconds_not_per_episode(fake, pytester, validate_report) -> None:
    pytester.makeconftest(FAKE_SUITE + """
def pytest_vla_modify_report(config, report):
    with open("writes.log", "a") as log:
        log.write(f"{len(report['episodes'])}\\n")
""")  # fmt: skip
    fake({"0": "succeed"}, "--vla-num-episodes", "10", "-p", "no:xdist").assert_outcomes(passed=10, failed=30)
    writes = [int(n) for n in (pytester.path / "writes.log").read_text().split()]
    assert len(writes) <= 5 and writes[0] == 0 and writes[-1] == 40  # the start, at most one per 5 s, the end
    assert _report(pytester, validate_report)["partial"] is False
    journal = (pytester.path / "eval_output" / "episodes.jsonl").read_text().splitlines()
    assert len(journal) == 40  # every row, as it finished


def test_a_killed_controller_is_resumed_from_its_journal(fake, pytester, validate_report) -> None:
    pytester.makeconftest(FAKE_SUITE + """
import os, signal

def pytest_vla_episode_finished(config, episode):
    if episode["episode_index"] == 3 and not config.getoption("vla_resume"):
        os.kill(os.getpid(), signal.SIGKILL)
""")  # fmt: skip
    args = ["--vla-tasks", "fake:0", "--vla-num-episodes", "6", "-p", "no:xdist"]
    killed = fake({"0": "succeed"}, *args)
    assert killed.ret == -signal.SIGKILL
    output = pytester.path / "eval_output"
    assert validate_report(output / "report.json")["episodes"] == []  # report.json lags: its next write was not due
    journal = output / "episodes.jsonl"
    assert [json.loads(line)["episode_index"] for line in journal.read_text().splitlines()] == [0, 1, 2, 3]
    with journal.open("a") as stream:
        stream.write('{"task_id": "fake", "task_in')  # a row torn by the kill
    (pytester.path / "resets.log").unlink()
    resumed = fake({"0": "succeed"}, *args, "--vla-resume")
    resumed.assert_outcomes(passed=2)
    resumed.stdout.fnmatch_lines([
        "vla: *episodes.jsonl: line 5 is an incomplete row (the run was killed writing it): ignored",
        "vla: --vla-resume: 4 finished episodes of *report.json kept, 2 to run",
    ])  # fmt: skip
    assert (pytester.path / "resets.log").read_text().split() == ["0:4", "0:5"]
    report = _report(pytester, validate_report)
    assert [row["episode_index"] for row in report["episodes"]] == [0, 1, 2, 3, 4, 5] and not report["partial"]
    assert not (output / "previous").exists()  # a continued run moves nothing aside


def test_a_new_run_moves_the_earlier_results_aside(fake, pytester, validate_report) -> None:
    args = ["--vla-tasks", "fake:0", "--vla-num-episodes", "2", "-p", "no:xdist", "--vla-save-trajectories"]
    output = pytester.path / "eval_output"
    fake({"0": "succeed"}, *args, "--junitxml", "eval_output/junit.xml").assert_outcomes(passed=2)
    first = validate_report(output / "report.json")
    second = fake({}, *args)
    second.assert_outcomes(failed=2)
    (moved,) = (output / "previous").iterdir()
    second.stdout.fnmatch_lines([
        f"vla: the earlier run's report.json, episodes.jsonl, report.html, junit.xml, trajectories moved to {moved} "
        "(--vla-resume continues a run instead)"
    ])  # fmt: skip
    assert moved.name == first["started_at"].replace("-", "").replace(":", "").split(".")[0] + "Z"
    kept = json.loads((moved / "report.json").read_text())
    assert [Path(row["trajectory_path"]) for row in kept["episodes"]] == [
        moved / "trajectories" / f"fake_task0_episode_{n}.npz" for n in (0, 1)]  # fmt: skip
    assert {**kept, "episodes": first["episodes"]} == first  # where its files are now, and nothing else changed
    assert len((moved / "episodes.jsonl").read_text().splitlines()) == 2
    assert sorted(path.name for path in (moved / "trajectories").iterdir()) == [
        "fake_task0_episode_0.npz", "fake_task0_episode_1.npz"]  # fmt: skip
    assert set(_reasons(_report(pytester, validate_report)).values()) == {"timeout"}  # the new run's alone
    assert len((output / "episodes.jsonl").read_text().splitlines()) == 2
    assert not (output / "junit.xml").exists()  # this run wrote none


def test_a_stale_watchdog_note_does_not_label_a_later_crash(fake, pytester, validate_report) -> None:
    notes = pytester.path / "eval_output" / ".vla-watchdog"
    notes.mkdir(parents=True)
    for worker in ("gw0", "gw1"):  # an earlier run's, whose controller died before reading them
        (notes / f"{worker}.json").write_text(json.dumps({"phase": "episode", "what": "x", "limit_s": 1.0}))
    result = fake({"0:0": "die"}, "--vla-tasks", "fake:0", "--vla-num-episodes", "1", "-n", "1")
    assert result.ret == HARNESS_ERROR_EXIT  # a harness error, not a policy's timeout
    (row,) = _report(pytester, validate_report)["episodes"]
    assert row["terminal_reason"] == "adapter_error"
    assert "died while running this episode (exit code 3)" in row["error_message"]


def test_results_that_cannot_be_moved_aside_stop_the_run_untouched(fake, pytester) -> None:
    args = ["--vla-tasks", "fake:0", "--vla-num-episodes", "1", "-p", "no:xdist"]
    fake({"0": "succeed"}, *args).assert_outcomes(passed=1)
    output = pytester.path / "eval_output"
    first = (output / "report.json").read_text()
    (output / "previous").write_text("a file where the directory should be")
    result = fake({}, *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --vla-output * holds an earlier run's results, which could not be moved aside "
                                 "(*): move them yourself, or pass --vla-resume to continue that run"])  # fmt: skip
    assert (output / "report.json").read_text() == first  # untouched
    assert (pytester.path / "resets.log").read_text().split() == ["0:0"]  # the first run's episode only


def test_a_watchdog_note_of_another_run_is_ignored(tmp_path: Path) -> None:
    from dataclasses import asdict

    from pytest_vla.report.layout import OutputLayout
    from pytest_vla.rollout.watchdog import Stuck, clear_notes, read_note

    layout = OutputLayout(tmp_path)
    layout.watchdog.mkdir()
    note = Stuck("episode", "fake:0 episode 0", 1.0, run_id="earlier", pid=123)
    layout.watchdog_note("gw0").write_text(json.dumps(asdict(note)))
    assert read_note(layout, "gw0", "this") is None
    layout.watchdog_note("gw0").write_text(json.dumps(asdict(note)))
    assert read_note(layout, "gw0", "earlier") == note
    layout.watchdog_note("gw1").write_text(json.dumps(asdict(note)))
    clear_notes(layout)
    assert list(layout.watchdog.iterdir()) == []
