"""Shards (``--vla-shard``, Slurm and Kubernetes indexes) and ``pytest-vla merge``, on the fake suite.

Four fake tasks; with ``--vla-num-episodes 3`` a run has 12 episodes. A merge of its shards must
give the report the unsharded run gives, and say what is missing when a shard is.
"""

from __future__ import annotations

import itertools
import json
import shlex
import subprocess
import sys
from fnmatch import fnmatchcase

import pytest
from junitparser.xunit2 import JUnitXml

from pytest_vla.report.schema import EpisodeId
from pytest_vla.report.shards import Shard
from tests.merging import run_merge, stable_rows

SCRIPT = {"0": "succeed", "2:1": "succeed", "3:2": "succeed"}
RUN = ["--vla-num-episodes", "3", "-p", "no:xdist"]


def _shard(fake, number: int, count: int, *args: str) -> pytest.RunResult:
    out = f"shards/{number}"
    return fake(SCRIPT, *RUN, "--vla-shard", f"{number}/{count}", "--vla-output", out, "--junitxml", f"{out}/junit.xml",
                *args)  # fmt: skip


@pytest.mark.parametrize(
    ("tasks", "episodes", "count"), list(itertools.product([1, 3, 10, 40], [1, 3, 50], [1, 2, 4, 7, 50]))
)
def test_shards_are_disjoint_balanced_and_split_tasks_only_where_balance_needs(
    tasks: int, episodes: int, count: int
) -> None:
    run = [EpisodeId("f", task, episode) for task in range(tasks) for episode in range(episodes)]
    shares = [Shard(index, count).share(run) for index in range(count)]
    assert [episode for share in shares for episode in share] == run  # disjoint, complete, in run order
    assert max(map(len, shares)) - min(map(len, shares)) <= 1
    splits = sum(1 for a, b in itertools.pairwise(shares) if a and b and a[-1].task_key == b[0].task_key)
    if len(run) % count == 0 and (len(run) // count) % episodes == 0:
        assert splits == 0  # whole tasks fit the equal shares: none is split
    assert splits <= count - 1


def test_the_remainder_goes_where_it_keeps_tasks_whole() -> None:
    run = [EpisodeId("f", task, episode) for task in range(10) for episode in range(3)]
    shares = [Shard(index, 4).share(run) for index in range(4)]
    assert [len(share) for share in shares] == [8, 7, 8, 7]  # the cut at 15 falls between two tasks
    assert shares[2][0] == EpisodeId("f", 5, 0)


@pytest.mark.parametrize("text", ["²/3", "1/٣"])
def test_only_ascii_digits_make_a_shard(text: str) -> None:
    with pytest.raises(ValueError, match="must be K/N"):  # int() raises on "²" and reads "٣" as 3
        Shard.parse(text)


@pytest.mark.parametrize("text", ["3", "3/3", "-1/3", "a/b", "1/0", "1/3/4"])
def test_a_bad_shard_is_refused_in_one_line(fake, text: str) -> None:
    result = fake({}, *RUN, f"--vla-shard={text}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: --vla-shard must be K/N*got '{text}'"])


@pytest.mark.parametrize(
    ("variables", "share"),
    [
        ({"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "3", "SLURM_ARRAY_TASK_MIN": "1"}, "1/3"),
        (
            {
                "SLURM_ARRAY_TASK_ID": "4",
                "SLURM_ARRAY_TASK_COUNT": "3",
                "SLURM_ARRAY_TASK_MIN": "0",
                "SLURM_ARRAY_TASK_STEP": "2",
            },
            "2/3",
        ),
        ({"JOB_COMPLETION_INDEX": "0", "VLA_SHARD_COUNT": "3"}, "0/3"),
    ],
)
def test_a_schedulers_index_picks_the_shard(
    fake, pytester, monkeypatch, validate_report, variables: dict[str, str], share: str
) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    fake(SCRIPT, *RUN)
    report = validate_report(pytester.path / "eval_output" / "report.json")
    index, count = map(int, share.split("/"))
    assert report["shard"] == {"index": index, "count": count}
    run = [EpisodeId("fake", task, episode) for task in range(4) for episode in range(3)]
    assert [EpisodeId.of_row(row) for row in report["episodes"]] == Shard(index, count).share(run)


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"JOB_COMPLETION_INDEX": "1"}, "JOB_COMPLETION_INDEX is set but VLA_SHARD_COUNT is not*"),
        (
            {"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_COUNT": "1", "SLURM_ARRAY_TASK_MIN": "0"},
            "cannot tell this job's shard from SLURM_ARRAY_TASK_ID (SLURM_ARRAY_TASK_ID=7, *); give --vla-shard K/N*",
        ),
    ],
)
def test_a_scheduler_index_that_names_no_shard_is_refused(fake, monkeypatch, variables, message: str) -> None:
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    result = fake({}, *RUN)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])


def test_merged_shards_equal_the_unsharded_run(fake, pytester, validate_report, validate_junit) -> None:
    whole = fake(SCRIPT, *RUN, "--junitxml", "whole.xml")
    for number in range(3):
        _shard(fake, number, 3)
    merged = run_merge("--output", "merged", "shards/0", "shards/1", "shards/2", cwd=pytester.path)
    assert merged.returncode == 0, merged.stderr
    aggregate = "aggregate                   5/12   41.7% [ 19.3,  68.0]   progress  42% [  9,  74]"
    assert aggregate in merged.stdout.splitlines()
    unsharded = validate_report(pytester.path / "eval_output" / "report.json")
    report = validate_report(pytester.path / "merged" / "report.json")
    assert stable_rows(report) == stable_rows(unsharded)
    for key in ("aggregate", "results", "task_results", "tasks", "partial", "missing_episodes", "protocol"):
        assert report[key] == unsharded[key], key
    assert [part["shard"] for part in report["merged_from"]] == [0, 1, 2] and report["shard"] is None
    cases = [(case.classname, case.name) for suite in JUnitXml.fromfile(str(pytester.path / "merged/junit.xml"))
             for case in suite]  # fmt: skip
    whole_cases = [(case.classname, case.name) for suite in JUnitXml.fromfile(str(pytester.path / "whole.xml"))
                   for case in suite]  # fmt: skip
    assert sorted(cases) == sorted(whole_cases) and len(cases) == 12
    validate_junit(pytester.path / "merged" / "junit.xml")
    assert whole.ret == pytest.ExitCode.TESTS_FAILED


def test_a_missing_shard_leaves_the_merge_partial_with_the_command_that_runs_it(
    fake, pytester: pytest.Pytester, validate_report
) -> None:
    for number in (0, 2):
        _shard(fake, number, 3)
    merged = run_merge("--output", "merged", "shards/0", "shards/2", cwd=pytester.path)
    assert merged.returncode == 1
    assert merged.stderr.strip() == "merged report is partial: 4 episodes missing"
    report = validate_report(pytester.path / "merged" / "report.json")
    run = [EpisodeId("fake", task, episode) for task in range(4) for episode in range(3)]
    assert report["partial"] is True
    assert report["missing_episodes"] == [episode.to_json() for episode in Shard(1, 3).share(run)]
    line = merged.stdout.splitlines()[-1]
    assert line.startswith("shard 1/3 did not report (4 episodes); run it, then merge again adding ")
    # Said to be another shard's command, as its report records it: whoever wrote the report chose it.
    assert f"The command shard 0/3 ran with, as {pytester.path}/shards/0/report.json records it (check it" in line
    # The printed command runs the missing shard; merging it in completes the report.
    command = shlex.split(line.partition(" && ")[2])
    assert subprocess.run([sys.executable, "-m", *command], cwd=pytester.path, capture_output=True).returncode == 1
    again = run_merge("--output", "merged", "shards/0", "shards/2", "merged/shard-1", cwd=pytester.path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert validate_report(pytester.path / "merged" / "report.json")["aggregate"]["n_total"] == 12


def test_a_shard_that_stopped_early_is_resumed_by_the_printed_command(
    fake, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    _shard(fake, 0, 2)
    fake({**SCRIPT, "2:0": "interrupt_at_last_step"}, *RUN, "--vla-shard", "1/2", "--vla-output", "shards/1")
    merged = run_merge("--output", "merged", "shards/0", "shards/1", cwd=pytester.path)
    assert merged.returncode == 1
    line = merged.stdout.splitlines()[-1]
    assert line.startswith(
        f"shard 1/2 stopped early (5 episodes missing); resume it, then merge again. The command it ran with, as "
        f"{pytester.path}/shards/1/report.json records it (check it before running it), with --vla-resume: cd "
    )
    command = shlex.split(line.partition(" && ")[2])
    assert command[-3:] == ["--vla-shard", "1/2", "--vla-resume"]
    monkeypatch.setenv("FAKE_SUITE_SCRIPT", json.dumps(SCRIPT))
    subprocess.run([sys.executable, "-m", *command], cwd=pytester.path, capture_output=True, check=False)
    assert run_merge("--output", "merged", "shards/0", "shards/1", cwd=pytester.path).returncode == 0


def test_merge_refuses_what_is_not_one_run(fake, pytester: pytest.Pytester) -> None:
    for number in range(2):
        _shard(fake, number, 2)
    fake(SCRIPT, *RUN, "--vla-shard", "1/2", "--vla-output", "other_seed", "--vla-seed", "8")
    fake({"0": "fail"}, *RUN, "--vla-shard", "0/2", "--vla-output", "rerun")
    fake(SCRIPT, *RUN, "--vla-shard", "1/3", "--vla-output", "thirds")
    cases = {
        "other_seed": "*other_seed/report.json was made with seed 8, this run has 7",
        "rerun": "two different rows for fake/fake:0::ep0: in */shards/0/report.json and */rerun/report.json",
        "thirds": "*thirds/report.json is shard 1/3, */shards/0/report.json is one of 2: not shards of one run",
    }
    for source, message in cases.items():
        result = run_merge("--output", "merged", "shards/0", "shards/1", source, cwd=pytester.path)
        assert result.returncode == 2 and result.stdout == ""
        assert len(result.stderr.splitlines()) == 1 and "Traceback" not in result.stderr
        assert fnmatchcase(result.stderr.strip(), f"pytest-vla merge: {message}"), result.stderr
    assert not (pytester.path / "merged").exists()
    # The same shard named twice (its directory and its report) is one shard, not a conflict.
    twice = run_merge("--output", "merged", "shards/0", "shards/0/report.json", "shards/1", cwd=pytester.path)
    assert twice.returncode == 0, twice.stderr


def test_a_report_records_how_it_was_started(fake, pytester: pytest.Pytester) -> None:
    fake(SCRIPT, *RUN, "--vla-shard", "0/2")
    report = json.loads((pytester.path / "eval_output" / "report.json").read_text())
    assert report["invocation"]["args"][-2:] == ["--vla-shard", "0/2"]
    assert report["invocation"]["cwd"] == str(pytester.path)


@pytest.mark.libero
def test_shards_of_real_episodes_merge_into_the_unsharded_run(pytester: pytest.Pytester, validate_report) -> None:
    run = ["--vla-export", "demo", "--vla-tasks", "libero_object:0,libero_object:1", "--vla-num-episodes", "2",
           "--vla-max-steps", "40", "-p", "no:xdist"]  # fmt: skip
    pytester.runpytest_subprocess(*run, "--vla-output", "whole")
    for number in range(2):
        pytester.runpytest_subprocess(*run, "--vla-shard", f"{number}/2", "--vla-output", f"shards/{number}")
    merged = run_merge("--output", "merged", "shards/0", "shards/1", cwd=pytester.path)
    assert merged.returncode == 0, merged.stderr
    unsharded = validate_report(pytester.path / "whole" / "report.json")
    report = validate_report(pytester.path / "merged" / "report.json")
    assert stable_rows(report) == stable_rows(unsharded)  # same successes, steps and reasons, episode by episode
    assert report["aggregate"] == unsharded["aggregate"] and unsharded["aggregate"]["n_total"] == 4
    assert [part["shard"] for part in report["merged_from"]] == [0, 1]


def test_a_node_id_with_a_number_that_is_not_ascii_names_no_episode() -> None:
    assert EpisodeId.from_nodeid("libero", "libero/libero_object:²::ep1") is None
    assert EpisodeId.from_nodeid("libero", "libero/libero_object:3::ep٣") is None
    assert EpisodeId.from_nodeid("libero", "libero/libero_object:3::ep1") == EpisodeId("libero_object", 3, 1)
