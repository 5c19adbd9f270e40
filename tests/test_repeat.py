"""Repeated trials (``--vla-repeat K``): K items per (task, init state), pass@k and pass^k, intervals and tests
that count init states as the independent units, through xdist, resume, shards, merge and compare.

End to end on the fake suite with the ``noisy`` behaviour: an episode succeeds when its policy's
noise comes out positive, so trials of one init state differ, and which do is known beforehand
(the export's noise is seeded by (seed + trial, task, episode, query)).
"""

from __future__ import annotations

import itertools
import json
import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import scipy.stats
from junitparser.xunit2 import JUnitXml

from pytest_vla.export.manifest import NoiseInput
from pytest_vla.policy.feeds import noise_tensor
from pytest_vla.report import stats
from pytest_vla.report.compare import compare
from pytest_vla.report.schema import EpisodeId, TaskSpec
from pytest_vla.report.stats import (
    PairedCounts,
    clustered_interval,
    clustered_mcnemar_p_value,
    mcnemar_p_value,
    mean_interval,
    pass_at_k,
    pass_hat_k,
    wilson_interval,
)
from tests.junit_xml import episode_facts
from tests.merging import run_merge, stable_rows
from tests.models import privileged_policy, write_export
from tests.reports import written

SEED, REPEAT, EPISODES = 7, 3, 2
TASKS = ("fake:0", "fake:1")
RUN = ["--vla-tasks", ",".join(TASKS), "--vla-num-episodes", str(EPISODES), "--vla-repeat", str(REPEAT)]
NOISY = {"0": "noisy", "1": "noisy"}


def _enumerated(successes: list[bool], k: int, every: bool) -> float:
    """Over all k-subsets of an init state's trials, the share where any (pass@k) or every (pass^k) one succeeds."""
    subsets = list(itertools.combinations(successes, k))
    return sum((all if every else any)(subset) for subset in subsets) / len(subsets)


def test_pass_at_k_and_pass_hat_k_are_the_unbiased_estimators() -> None:
    trials = [[True, False, False], [False] * 3, [True] * 3, [True, True, False]]
    clusters = [(sum(outcomes), len(outcomes)) for outcomes in trials]
    # By hand: pass@2 of 1 in 3 is 1 - C(2,2)/C(3,2) = 2/3; pass^2 of 2 in 3 is C(2,2)/C(3,2) = 1/3.
    assert pass_at_k(clusters, 1) == pytest.approx(0.5)
    assert pass_at_k(clusters, 2) == pytest.approx((2 / 3 + 0 + 1 + 1) / 4)
    assert pass_at_k(clusters, 3) == pytest.approx(3 / 4)
    assert pass_hat_k(clusters, 2) == pytest.approx((0 + 0 + 1 + 1 / 3) / 4)
    assert pass_hat_k(clusters, 3) == pytest.approx(1 / 4)
    for k in (1, 2, 3):  # and what they estimate, counted over every choice of k trials
        assert pass_at_k(clusters, k) == pytest.approx(sum(_enumerated(t, k, every=False) for t in trials) / 4)
        assert pass_hat_k(clusters, k) == pytest.approx(sum(_enumerated(t, k, every=True) for t in trials) / 4)
    assert pass_at_k([(1, 2), (1, 3)], 3) == pytest.approx(1.0)  # init states with fewer trials are left out
    assert pass_at_k([(1, 2)], 3) is None


def test_the_pooled_interval_counts_init_states_when_their_trials_agree() -> None:
    # A deterministic policy run 5 times: 50 trials say no more than the 10 init states.
    identical = [(5, 5)] * 7 + [(0, 5)] * 3
    low, high, effective = clustered_interval(identical)
    assert (low, high) == pytest.approx(wilson_interval(7, 10)) and effective == 10
    assert clustered_interval([(1, 1)] * 7 + [(0, 1)] * 3) == pytest.approx((*wilson_interval(7, 10), 10))
    # Trials that vary within init states as much as between them count nearly in full.
    mixed = [(2, 4), (3, 4), (1, 4), (2, 4), (2, 4), (3, 4), (1, 4), (2, 4)]
    assert 24 <= clustered_interval(mixed)[2] <= 32
    every = clustered_interval([(5, 5)] * 10)
    assert every[2] == 10 and every[:2] == pytest.approx(wilson_interval(10, 10))  # 100%: nothing to estimate from
    assert clustered_interval([]) is None
    # Progress likewise: the t interval of one value per init state, which K equal repeats do not narrow.
    values = [1.0, 0.5, 0.25, 0.5, 0.75, 0.5]
    once = scipy.stats.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=scipy.stats.sem(values))
    assert 0 < once[0] < once[1] < 1  # unclipped
    assert mean_interval([[value] for value in values]) == pytest.approx(once)
    assert mean_interval([[value] * 4 for value in values]) == pytest.approx(once)
    assert mean_interval([[0.5, 1.0]]) is None  # one init state says nothing of the spread between them


def test_the_clustered_mcnemar_test_is_mcnemars_with_one_pair_per_init_state() -> None:
    for only_base, only_new in [(0, 5), (2, 7), (3, 3), (1, 12), (10, 0)]:
        differences = [1] * only_new + [-1] * only_base + [0] * 4
        counts = PairedCounts(2, only_base, only_new, 2)
        assert clustered_mcnemar_p_value(differences) == pytest.approx(mcnemar_p_value(counts))
    # Five identical trials of each of 8 init states, NEW winning 7 of them: the evidence of 8, not 40.
    assert clustered_mcnemar_p_value([5] * 7 + [-5]) == pytest.approx(mcnemar_p_value(PairedCounts(0, 1, 7, 0)))
    # By hand: 4 init states of differences 3, 3, 2, -1: 4 of the 16 sign patterns are at least 7 from 0.
    assert clustered_mcnemar_p_value([3, 3, 2, -1]) == pytest.approx(4 / 16)
    assert clustered_mcnemar_p_value([0, 0]) == 1.0


def test_a_large_clustered_test_goes_through_the_fft_and_agrees(monkeypatch: pytest.MonkeyPatch) -> None:
    differences = list(np.random.default_rng(3).integers(-6, 7, 400))
    exact = clustered_mcnemar_p_value(differences)
    monkeypatch.setattr(stats, "FFT_ABOVE", 0)
    assert clustered_mcnemar_p_value(differences) == pytest.approx(exact, rel=1e-9)


def _repeated(outcomes: dict[str, list[list[bool]]]) -> dict[str, Any]:
    """A written report of ``{"family:index": [[success per trial] per episode]}``."""
    tasks, episodes = [], []
    for key, by_episode in outcomes.items():
        family, _, index = key.rpartition(":")
        tasks.append({"task_id": family, "task_index": int(index), "instruction": "x", "max_steps": 280})
        for episode, trials in enumerate(by_episode):
            for trial, success in enumerate(trials):
                episodes.append({"task_id": family, "task_index": int(index), "episode_index": episode, "trial": trial,
                                 "terminal_reason": "success" if success else "timeout"})  # fmt: skip
    return written({"suite": "libero", "seed": 7, "protocol": {}, "task_results": tasks, "episodes": episodes})


def test_compare_pairs_trial_by_trial_and_tests_init_states() -> None:
    # NEW wins 7 of 8 init states on all 4 trials: 28 discordant pairs, which McNemar's test of the pairs
    # would call p = 7e-9; the init states say p = 0.07.
    base = _repeated({"libero_object:0": [[False] * 4] * 7 + [[True] * 4]})
    new = _repeated({"libero_object:0": [[True] * 4] * 7 + [[False] * 4]})
    assert base["repeat"] == 4 and base["aggregate"]["n_init_states"] == 8
    assert base["aggregate"]["ci95"] == pytest.approx(wilson_interval(1, 8), abs=1e-6)
    row = compare(base, new, margin=0.05, base_name="a", new_name="b").overall
    assert (row.counts.n_pairs, row.init_states, row.counts.only_new, row.counts.only_base) == (32, 8, 28, 4)
    assert row.p_value == pytest.approx(mcnemar_p_value(PairedCounts(0, 1, 7, 0)))
    # ... and the interval is the one of 8 pairs, not the 4x narrower one of 32.
    once = compare(
        _repeated({"libero_object:0": [[False]] * 7 + [[True]]}),
        _repeated({"libero_object:0": [[True]] * 7 + [[False]]}),
        margin=0.05,
        base_name="a",
        new_name="b",
    )
    assert row.interval == pytest.approx(once.overall.interval)  # fmt: skip
    assert row.verdict.value == "UNDERPOWERED"  # 8 init states cannot find 5 pp
    # Trial 2 of an init state pairs with trial 2: a NEW that lost only its trial 1s loses 8 pairs.
    later = _repeated({"libero_object:0": [[False, True, False, False]] * 8})
    mixed = compare(base, later, margin=0.05, base_name="a", new_name="b").overall
    assert (mixed.counts.only_new, mixed.counts.only_base) == (7, 3)


def test_a_trial_has_its_own_id_and_files_and_trial_0_is_the_unrepeated_episode() -> None:
    episode = EpisodeId("fake", 3, 2, 1)
    assert episode.nodeid("fake") == "fake/fake:3::ep2-trial1"
    assert EpisodeId.from_nodeid("fake", "fake/fake:3::ep2-trial1") == episode
    assert episode.file_stem == "fake_task3_episode_2_trial_1"
    assert EpisodeId("fake", 3, 2).nodeid("fake") == "fake/fake:3::ep2"
    assert EpisodeId.of_row({"task_id": "fake", "task_index": 3, "episode_index": 2}).trial == 0  # an older row
    for name in ("ep2-trial0", "ep2-trial", "ep2-trial1x", "ep2-trial²"):
        assert EpisodeId.from_nodeid("fake", f"fake/fake:3::{name}") is None, name


def _noisy_export(directory: Path) -> None:
    """action[:3] = sum(state) + noise: at the fake reset's zero state, the noise's sign decides the episode."""
    inputs = {"state": {"source": "state"}, "noise": {"source": "noise", "shape": [1]}}
    write_export(directory, privileged_policy({"state": [1, 8], "noise": [1]}), inputs)


def _expected() -> dict[tuple[int, int, int], bool]:
    """(task, episode, trial) -> success, from the noise each trial's policy draws."""
    binding = NoiseInput("noise", (1,))

    def first_noise(task: int, episode: int, trial: int) -> float:
        return float(noise_tensor(binding, SEED + trial, TaskSpec("fake", task, "", 5), episode, 0)[0])

    cells = itertools.product((0, 1), range(EPISODES), range(REPEAT))
    return {(task, episode, trial): first_noise(task, episode, trial) > 0 for task, episode, trial in cells}


def _outcomes(report: dict[str, Any]) -> dict[tuple[int, int, int], bool]:
    return {(row["task_index"], row["episode_index"], row["trial"]): row["success"] for row in report["episodes"]}


@pytest.fixture
def noisy(fake, pytester: pytest.Pytester):
    _noisy_export(pytester.path / "export")
    return fake


def test_repeated_trials_run_as_items_through_xdist_with_pass_at_k(
    noisy, pytester: pytest.Pytester, validate_report
) -> None:
    expected = _expected()
    assert len(set(expected.values())) == 2  # some trials succeed and some fail: the test can tell them apart
    result = noisy(NOISY, *RUN, "-n", "2", "-v", "--junitxml", "junit.xml")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*vla: suite fake, 2 tasks x 2 episodes x 3 trials = 12 items*"])
    result.stdout.fnmatch_lines(["*fake/fake:1::ep1-trial2*"])
    report = validate_report(pytester.path / "eval_output" / "report.json")
    assert report["repeat"] == REPEAT and len(report["episodes"]) == 12
    assert _outcomes(report) == expected
    by_init_state = [[expected[task, episode, trial] for trial in range(REPEAT)] for task in (0, 1)
                     for episode in range(EPISODES)]  # fmt: skip
    aggregate = report["aggregate"]
    for k in ("1", "2", "3"):
        assert aggregate["pass_at_k"][k] == pytest.approx(
            sum(_enumerated(trials, int(k), every=False) for trials in by_init_state) / 4, abs=1e-6
        )
        assert aggregate["pass_hat_k"][k] == pytest.approx(
            sum(_enumerated(trials, int(k), every=True) for trials in by_init_state) / 4, abs=1e-6
        )
    assert aggregate["n_init_states"] == 4 and 4 <= aggregate["n_effective"] <= 12
    result.stdout.fnmatch_lines([f"aggregate*trials*pass@1*pass@3 {100 * aggregate['pass_at_k']['3']:5.1f}%*"])
    cases = {(case.classname, case.name): episode_facts(case)
             for suite in JUnitXml.fromfile(str(pytester.path / "junit.xml")) for case in suite}  # fmt: skip
    assert len(cases) == 12 and cases["fake.fake:1", "ep1-trial2"]["trial"] == "2"
    assert "trial" not in cases["fake.fake:1", "ep1"]


def test_resume_runs_only_the_trials_not_yet_run(noisy, pytester: pytest.Pytester, validate_report) -> None:
    first = noisy(NOISY, *RUN, "-p", "no:xdist", "-k", "not trial2")
    assert first.ret == pytest.ExitCode.TESTS_FAILED
    (pytester.path / "resets.log").unlink()
    resumed = noisy(NOISY, *RUN, "-p", "no:xdist", "--vla-resume")
    resumed.stdout.fnmatch_lines(["*--vla-resume: 8 finished episodes of * kept, 4 to run*"])
    assert sorted((pytester.path / "resets.log").read_text().split()) == ["0:0", "0:1", "1:0", "1:1"]
    report = validate_report(pytester.path / "eval_output" / "report.json")
    assert _outcomes(report) == _expected() and not report["partial"]


def test_shards_of_repeated_trials_merge_into_the_unsharded_run_and_compare_with_it(
    noisy, pytester: pytest.Pytester, validate_report
) -> None:
    noisy(NOISY, *RUN, "-p", "no:xdist")
    for number in range(2):
        noisy(NOISY, *RUN, "-p", "no:xdist", "--vla-shard", f"{number}/2", "--vla-output", f"shards/{number}")
    merged = run_merge("--output", "merged", "shards/0", "shards/1", cwd=pytester.path)
    assert merged.returncode == 0, merged.stderr
    whole = validate_report(pytester.path / "eval_output" / "report.json")
    report = validate_report(pytester.path / "merged" / "report.json")
    assert stable_rows(report) == stable_rows(whole)
    for key in ("aggregate", "results", "task_results", "repeat", "partial"):
        assert report[key] == whole[key], key
    command = [str(Path(sys.executable).parent / "pytest-vla"), "compare", "eval_output", "merged", "--json", "c.json"]
    compared = subprocess.run(command, capture_output=True, text=True, cwd=pytester.path, check=False)
    assert compared.returncode == 0, compared.stderr
    overall = json.loads((pytester.path / "c.json").read_text())["rows"][-1]
    assert (overall["n_pairs"], overall["n_init_states"], overall["only_new"], overall["only_base"]) == (12, 4, 0, 0)
    assert math.isclose(overall["p_value"], 1.0)
