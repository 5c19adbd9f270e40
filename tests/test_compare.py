"""Paired comparison: the statistics against hand-computed cases, pairing and refusals, the CLI, and the run's gate."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_vla.cli import main
from pytest_vla.errors import ReportError
from pytest_vla.report.compare import Verdict, compare, comparison_lines, verdict
from pytest_vla.report.stats import (
    PairedCounts,
    detectable_difference,
    holm,
    mcnemar_p_value,
    mcnemar_power,
    paired_difference_interval,
    pairs_needed,
)
from tests.reports import written

OK, FAILED, USAGE_ERROR = 0, 1, 4


# --- statistics --------------------------------------------------------------------------------------------


def test_the_mcnemar_p_value_is_the_exact_binomial_tail_of_the_discordant_pairs() -> None:
    # 12 pairs only NEW succeeded, 2 only BASE: 2 * P(X <= 2), X ~ Bin(14, 1/2) = 2 * (1 + 14 + 91) / 2**14.
    assert mcnemar_p_value(PairedCounts(36, 2, 12, 6)) == pytest.approx(212 / 16384, rel=1e-12)
    # 6 discordant pairs all one way: 2 / 2**6, the fewest that reach p < 0.05.
    assert mcnemar_p_value(PairedCounts(0, 0, 6, 0)) == pytest.approx(2 / 64)
    assert mcnemar_p_value(PairedCounts(0, 0, 5, 3)) == pytest.approx(2 / 32)
    assert mcnemar_p_value(PairedCounts(20, 0, 0, 20)) == 1.0


def test_the_difference_interval_is_bonett_and_prices_adjusted_wald() -> None:
    # By hand: (12+1)/58 - (2+1)/58 = 0.172414; sqrt((13/58 + 3/58 - 0.172414**2) / 58) = 0.065144; * 1.959964.
    low, high = paired_difference_interval(PairedCounts(36, 2, 12, 6))
    assert (low, high) == (pytest.approx(0.044734, abs=1e-6), pytest.approx(0.300093, abs=1e-6))
    # No discordant pair in 50: still an interval, +-1.96 * sqrt(2/52/52).
    low, high = paired_difference_interval(PairedCounts(40, 0, 0, 10))
    assert (low, high) == (pytest.approx(-0.053304, abs=1e-6), pytest.approx(0.053304, abs=1e-6))
    # Clipped to the possible differences.
    assert paired_difference_interval(PairedCounts(0, 10, 0, 0))[0] == -1.0
    assert paired_difference_interval(PairedCounts(0, 0, 0, 0)) is None


def test_holm_multiplies_the_kth_smallest_p_value_by_the_tests_left_and_keeps_the_order() -> None:
    # Sorted: 0.005*4 = 0.02, 0.01*3 = 0.03, 0.03*2 = 0.06, 0.04*1 = 0.04 -> 0.06 (never below an earlier one).
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
    assert holm([0.02]) == [0.02]


def test_power_is_the_exact_tests_so_five_pairs_can_never_reject() -> None:
    assert mcnemar_power(1.0, 5, 1.0) == 0.0  # 5 of 5 one way: p = 1/16, not below 0.05
    assert mcnemar_power(1.0, 6, 1.0) == pytest.approx(1.0)  # 6 of 6: p = 1/32
    assert detectable_difference(5, 0.4) == 1.0
    # More pairs find smaller differences; more discordance (noisier policies) needs more pairs.
    assert detectable_difference(50, 0.1) > detectable_difference(500, 0.1) > detectable_difference(2000, 0.1)
    assert detectable_difference(500, 0.4) > detectable_difference(500, 0.1)
    needed = pairs_needed(0.05, 0.3)
    assert mcnemar_power(0.05, needed, 0.3) >= 0.8 > mcnemar_power(0.05, needed - 1, 0.3)


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        (PairedCounts(10, 0, 30, 10), Verdict.IMPROVED),  # 30 of 30 discordant pairs favour NEW
        (PairedCounts(10, 30, 0, 10), Verdict.REGRESSED),
        (PairedCounts(10, 1, 0, 2), Verdict.UNDERPOWERED),  # 13 pairs can find only huge differences
        (PairedCounts(900, 10, 10, 80), Verdict.HELD),  # 1,000 pairs, no difference: a 5 pp one would show
        (PairedCounts(400, 30, 60, 510), Verdict.HELD),  # significant, but +3 pp: inside the margin
    ],
)
def test_the_verdict(counts: PairedCounts, expected: Verdict) -> None:
    discordance = counts.discordant / counts.n_pairs
    got = verdict(counts, mcnemar_p_value(counts), detectable_difference(counts.n_pairs, discordance), 0.05)
    assert got is expected


_counts = st.builds(PairedCounts, *(st.integers(0, 60) for _ in range(4))).filter(lambda c: c.n_pairs > 0)
_FLIPPED = {Verdict.IMPROVED: Verdict.REGRESSED, Verdict.REGRESSED: Verdict.IMPROVED}


@settings(max_examples=60, deadline=None)
@given(_counts, st.sampled_from([0.0, 0.05, 0.1]))
def test_swapping_base_and_new_flips_the_verdict_and_mirrors_the_numbers(counts: PairedCounts, margin: float) -> None:
    swapped = PairedCounts(counts.both, counts.only_new, counts.only_base, counts.neither)
    assert mcnemar_p_value(swapped) == pytest.approx(mcnemar_p_value(counts))
    low, high = paired_difference_interval(counts)
    assert paired_difference_interval(swapped) == (pytest.approx(-high), pytest.approx(-low))
    assert (
        low <= counts.difference <= high
        or math.isclose(counts.difference, low)
        or math.isclose(counts.difference, high)
    )

    def judged(c: PairedCounts) -> Verdict:
        return verdict(c, mcnemar_p_value(c), detectable_difference(c.n_pairs, c.discordant / c.n_pairs), margin)

    assert judged(swapped) is _FLIPPED.get(judged(counts), judged(counts))


# --- pairing reports ---------------------------------------------------------------------------------------


def report(outcomes: dict[str, list[bool]], *, seed: int = 7, max_steps: int = 280, **protocol: Any) -> dict[str, Any]:
    """A pytest-vla report.json's pairing-relevant part: ``{"family:index": [success per episode]}``."""
    tasks, episodes = [], []
    for key, successes in outcomes.items():
        family, _, index = key.rpartition(":")
        clean = family.removesuffix("_swap")
        tasks.append({"task_id": family, "task_index": int(index), "instruction": "x", "max_steps": max_steps,
                      "clean_task": f"{clean}:{index}" if clean != family else None})  # fmt: skip
        for episode, success in enumerate(successes):
            episodes.append({"task_id": family, "task_index": int(index), "episode_index": episode, "success": success,
                             "terminal_reason": "success" if success else "timeout"})  # fmt: skip
    return {"suite": "libero", "seed": seed, "task_results": tasks, "episodes": episodes,
            "protocol": {"max_steps": {"libero_object": 280}, "versions": {"mujoco": "3.3.2"}, **protocol}}  # fmt: skip


def run_compare(base: dict[str, Any], new: dict[str, Any], margin: float = 0.05):
    return compare(base, new, margin=margin, base_name="base", new_name="new")


def test_episodes_pair_by_task_and_episode_and_are_tested_per_task_family_and_overall() -> None:
    base = report({"libero_object:0": [True] * 10, "libero_object:1": [True, False] * 5, "libero_goal:0": [False] * 4})
    new = report({"libero_object:0": [False] * 10, "libero_object:1": [True] * 10, "libero_goal:0": [False] * 4})
    comparison = run_compare(base, new)
    rows = {(row.scope, row.pairing.label): row for row in comparison.rows}
    task0 = rows["task", "libero_object:0"]
    assert (task0.counts.only_base, task0.counts.only_new, task0.counts.n_pairs) == (10, 0, 10)
    assert task0.p_value == pytest.approx(2 / 1024)
    assert task0.p_adjusted == pytest.approx(3 * 2 / 1024)  # Holm over the 3 tasks: the smallest of 3
    assert task0.verdict is Verdict.REGRESSED
    family = rows["family", "libero_object"]
    assert (family.counts.only_base, family.counts.only_new) == (10, 5)
    assert comparison.overall.counts.n_pairs == 24
    assert [row.scope for row in comparison.rows] == ["task"] * 3 + ["family"] * 2 + ["overall"]
    fields = next(row for row in comparison.to_json()["rows"] if row["family"] == "libero_object")
    for key in ("scope", "family", "task_index", "n_pairs", "base_successes", "new_successes", "only_base",
                "only_new", "p_value", "verdict"):  # fmt: skip
        assert key in fields
    assert fields["verdict"] == "REGRESSED" and fields["family"] == "libero_object" and fields["task_index"] == 0


def test_beside_the_verdict_the_paired_difference_in_progress_is_tested_by_signed_ranks() -> None:
    import scipy.stats

    # B fails as often as A, but gets further: the success rate alone would say nothing.
    base = report({"libero_object:0": [False] * 6, "libero_goal:0": [True, False]})
    new = report({"libero_object:0": [False] * 6, "libero_goal:0": [True, False]})
    for row, progress in zip(base["episodes"], [0.0, 0.0, 0.5, 0.0, 0.5, 0.0, 1.0, 0.0], strict=True):
        row["progress"] = progress
    for row, progress in zip(new["episodes"], [0.5, 0.5, 0.5, 0.5, 1.0, 0.5, 1.0, None], strict=True):
        row["progress"] = progress  # the last has none (an older report's row): that pair is left out
    comparison = run_compare(base, new)
    rows = {(row.scope, row.pairing.label): row for row in comparison.rows}
    differences = [0.5, 0.5, 0.0, 0.5, 0.5, 0.5]
    task = rows["task", "libero_object:0"].progress
    assert (task.n_pairs, task.difference) == (6, pytest.approx(sum(differences) / 6))
    assert task.p_value == pytest.approx(scipy.stats.wilcoxon(differences, zero_method="pratt").pvalue)
    assert rows["task", "libero_goal:0"].progress.to_json() == {"n_pairs": 1, "difference": 0.0, "p_value": 1.0}
    assert comparison.overall.progress.n_pairs == 7
    assert comparison.overall.verdict.value == "UNDERPOWERED"  # the success rates are identical
    lines = comparison_lines(comparison)
    assert any(line.startswith("libero_object:0") and "progress +41.7 pp p=" in line for line in lines)
    assert report({"libero_object:0": [True]})["episodes"][0].get("progress") is None
    plain = run_compare(report({"libero_object:0": [True]}), report({"libero_object:0": [True]}))
    assert plain.overall.progress is None and not any("Wilcoxon" in line for line in comparison_lines(plain))


def test_a_perturbed_task_pairs_with_its_clean_task_whichever_side_it_is_on() -> None:
    clean = report({"libero_object:0": [True] * 8, "libero_object:1": [True] * 8})
    perturbed = report({"libero_object_swap:0": [False] * 8, "libero_object_swap:1": [True] * 4 + [False] * 4})
    comparison = run_compare(clean, perturbed)
    family = next(row for row in comparison.rows if row.scope == "family")
    assert (family.pairing.family, family.pairing.base_family) == ("libero_object_swap", "libero_object")
    assert family.counts.difference == pytest.approx(-12 / 16)  # the robustness drop
    assert family.pairing.label == "libero_object_swap vs libero_object"
    reverse = run_compare(perturbed, clean)
    assert reverse.overall.counts.difference == pytest.approx(12 / 16)
    assert reverse.overall.verdict is Verdict.IMPROVED and comparison.overall.verdict is Verdict.REGRESSED
    assert not comparison.reused and comparison.unpaired == 0


def test_a_clean_episode_paired_with_several_perturbations_is_counted_once_and_said() -> None:
    clean = report({"libero_object:0": [True] * 4})
    perturbed = report({"libero_object_swap:0": [False] * 4, "libero_object_lan:0": [True] * 4})
    for task in perturbed["task_results"]:
        task["clean_task"] = "libero_object:0"
    comparison = run_compare(clean, perturbed)
    assert (comparison.reused, comparison.unpaired, comparison.overall.counts.n_pairs) == (True, 0, 8)
    assert "judge each perturbation by its family row" in "\n".join(comparison_lines(comparison))


def test_episodes_with_a_harness_error_on_either_side_are_left_out_and_counted() -> None:
    base = report({"libero_object:0": [True] * 6})
    new = report({"libero_object:0": [True] * 6})
    new["episodes"][0]["terminal_reason"], new["episodes"][0]["success"] = "adapter_error", False
    del new["episodes"][5]  # a partial run: episode 5 has no partner
    comparison = run_compare(base, new)
    assert (comparison.excluded, comparison.unpaired, comparison.overall.counts.n_pairs) == (1, 1, 4)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r.update(seed=8), "BASE was run with seed 7, NEW with seed 8: not paired"),
        (lambda r: r["protocol"].update(versions={"mujoco": "3.4.0"}), "protocols: versions is"),
        (lambda r: r["task_results"][0].update(max_steps=50), "libero_object:0: step budget 50 in NEW, 280 in BASE"),
        (lambda r: r.update(task_results=[{**r["task_results"][0], "task_id": "libero_goal"}]), "no task of NEW"),
    ],
)
def test_reports_that_do_not_pair_are_refused_naming_why(change, message: str) -> None:
    base = report({"libero_object:0": [True] * 3})
    new = copy.deepcopy(base)
    change(new)
    with pytest.raises(ReportError, match=message.replace("(", r"\(")):
        run_compare(base, new)


def test_the_episodes_rendered_and_their_number_may_differ_between_two_exports() -> None:
    base = report({"libero_object:0": [True] * 3}, cameras_rendered=["agentview"], num_episodes_per_task=3)
    new = report({"libero_object:0": [True] * 5}, cameras_rendered=[], num_episodes_per_task=5)
    assert run_compare(base, new).overall.counts.n_pairs == 3


# --- the command ------------------------------------------------------------------------------------------


def _write(directory: Path, data: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "report.json").write_text(json.dumps(written(data)))
    return directory


def test_compare_prints_the_table_writes_json_and_a_page_and_exits_1_only_on_a_regression(tmp_path, capsys) -> None:
    good = _write(tmp_path / "good", report({f"libero_object:{i}": [True] * 10 for i in range(3)}))
    bad = _write(tmp_path / "bad", report({f"libero_object:{i}": [False] * 10 for i in range(3)}))
    assert (
        main(["compare", str(good), str(bad), "--json", str(tmp_path / "c.json"), "--html", str(tmp_path / "c.html")])
        == 1
    )
    out = capsys.readouterr().out
    assert "REGRESSED: NEW -100.0 pp vs BASE" in out and "libero_object:2" in out and "over the task rows (3)" in out
    written = json.loads((tmp_path / "c.json").read_text())
    assert written["verdict"] == "REGRESSED" and len(written["rows"]) == 5
    assert "renderComparison" in (tmp_path / "c.html").read_text()
    assert main(["compare", str(bad), str(good / "report.json")]) == 0
    assert "IMPROVED" in capsys.readouterr().out
    few = _write(tmp_path / "few", report({"libero_object:0": [True, False, True]}))
    assert main(["compare", str(few), str(few)]) == 0
    assert "UNDERPOWERED" in (out := capsys.readouterr().out) and "pairs (episodes on each side) would settle" in out


def test_compare_refuses_in_one_line_with_exit_2(tmp_path, capsys) -> None:
    base = _write(tmp_path / "a", report({"libero_object:0": [True]}))
    other = _write(tmp_path / "b", report({"libero_object:0": [True]}, seed=3))
    assert main(["compare", str(base), str(other)]) == 2
    err = capsys.readouterr().err
    assert err == "pytest-vla compare: BASE was run with seed 7, NEW with seed 3: not paired\n"
    assert main(["compare", str(base), str(tmp_path / "missing")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


# --- the run's gate ---------------------------------------------------------------------------------------


def _episodes(n: int) -> tuple[str, ...]:
    return ("--vla-num-episodes", str(n), "-p", "no:xdist")


def test_a_run_against_its_baseline_fails_only_on_a_significant_regression(fake, pytester, validate_report) -> None:
    all_succeed = {str(task): "succeed" for task in range(4)}
    assert fake(all_succeed, *_episodes(10), "--vla-output", "baseline").ret == OK
    same = fake(all_succeed, *_episodes(10), "--vla-baseline", "baseline", "--vla-output", "same")
    assert same.ret == OK
    same.stdout.fnmatch_lines(["against --vla-baseline */baseline:", "UNDERPOWERED: NEW +0.0 pp vs BASE*40 pairs*"])
    worse = fake({"0": "succeed"}, *_episodes(10), "--vla-baseline", "baseline/report.json", "--vla-output", "worse")
    assert worse.ret == FAILED
    worse.stdout.fnmatch_lines(["REGRESSED: NEW -75.0 pp vs BASE*p=*over 40 pairs"])
    written = validate_report(pytester.path / "worse" / "report.json")["comparison"]
    assert written["verdict"] == "REGRESSED" and written["base"].endswith("baseline/report.json")
    # The baseline's failures do not fail a run that holds up against it.
    held = fake({"0": "succeed"}, *_episodes(10), "--vla-baseline", "worse", "--vla-output", "held")
    assert held.ret == OK
    assert validate_report(pytester.path / "held" / "report.json")["comparison"]["verdict"] == "UNDERPOWERED"
    assert "Against the baseline" in (pytester.path / "held" / "report.html").read_text()


def test_a_baseline_that_cannot_pair_is_refused_before_any_episode(fake, pytester) -> None:
    assert fake({}, *_episodes(2), "--vla-output", "baseline").ret == FAILED
    (pytester.path / "resets.log").unlink()
    result = fake({}, *_episodes(2), "--vla-seed", "3", "--vla-baseline", "baseline")
    assert result.ret == USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: --vla-baseline */baseline: BASE was run with seed 7, NEW with seed 3: not paired"]
    )
    assert not (pytester.path / "resets.log").exists()
    missing = fake({}, *_episodes(2), "--vla-baseline", "nowhere")
    assert missing.ret == USAGE_ERROR and "Traceback" not in missing.stderr.str()
