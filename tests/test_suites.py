"""Suites found by name: the ``pytest_vla.suites`` entry point of another package, the hook, refusals."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import FAKE_SUITE
from tests.models import state_only_export


def _install_suite_package(site: Path, entry: str) -> None:
    """An installed distribution (its metadata only) whose entry point registers ``entry`` as a suite."""
    (site / "bench_suites.py").write_text(FAKE_SUITE)
    info = site / "bench_suites-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: bench-suites\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[pytest_vla.suites]\n{entry}\n")


def test_a_suite_from_another_packages_entry_point_runs_and_every_cli_knows_it(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, validate_report
) -> None:
    site = pytester.mkdir("site")
    _install_suite_package(site, "fake = bench_suites:FakeSuite")
    monkeypatch.setenv("PYTHONPATH", str(site))
    monkeypatch.setenv("FAKE_SUITE_SCRIPT", json.dumps({"0": "succeed"}))
    state_only_export(pytester.path / "export")
    result = pytester.runpytest_subprocess(
        "--vla-export", "export", "--vla-suite", "fake", "--vla-tasks", "fake:0,fake:1"
    )
    result.assert_outcomes(passed=3, failed=3)
    assert validate_report(pytester.path / "eval_output" / "report.json")["suite"] == "fake"
    inspect = subprocess.run(
        [sys.executable, "-m", "pytest_vla.cli", "inspect", "export", "--suite", "fake", "--tasks", "fake:0"],
        cwd=pytester.path, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert inspect.returncode == 0, inspect.stderr
    assert "checks   passed on 1 fake task(s)" in inspect.stdout


def test_a_suite_that_cannot_be_loaded_is_refused_naming_its_entry_point(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = pytester.mkdir("site")
    _install_suite_package(site, "broken = bench_suites_gone:Suite")
    monkeypatch.setenv("PYTHONPATH", str(site))
    state_only_export(pytester.path / "export")
    result = pytester.runpytest_subprocess("--vla-export", "export", "--vla-suite", "broken")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: suite 'broken' (entry point bench_suites_gone:Suite) cannot be loaded: *No module named*"]
    )
    unknown = pytester.runpytest_subprocess("--vla-export", "export", "--vla-suite", "nope")
    assert unknown.ret == pytest.ExitCode.USAGE_ERROR
    unknown.stderr.fnmatch_lines(
        ["ERROR: --vla-suite: unknown suite 'nope' (installed: aloha, broken, libero, metaworld*"]
    )


def test_a_suite_lacking_part_of_the_interface_is_refused_naming_what_it_lacks(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = pytester.mkdir("site")
    _install_suite_package(site, "partial = bench_suites:PartialSuite")
    with (site / "bench_suites.py").open("a") as module:
        module.write("\n\nclass PartialSuite(FakeSuite):\n    state_options = remedies = None\n")
        module.write("del PartialSuite.state_options, PartialSuite.remedies, FakeSuite.state_options\n")
    monkeypatch.setenv("PYTHONPATH", str(site))
    state_only_export(pytester.path / "export")
    result = pytester.runpytest_subprocess("--vla-export", "export", "--vla-suite", "partial")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    result.stderr.fnmatch_lines(
        [
            "ERROR: suite 'partial' (entry point bench_suites:PartialSuite) lacks state_options, which every "
            "suite defines (docs/suites.md)"
        ]
    )
    # From a conftest's pytest_vla_make_suite hook.
    pytester.makeconftest(f"""
{FAKE_SUITE}

class HookSuite(FakeSuite):
    pass

del FakeSuite.idle_action

def pytest_vla_make_suite(config, name):
    return HookSuite() if name == "hooked" else None
""")
    hooked = pytester.runpytest_subprocess("--vla-export", "export", "--vla-suite", "hooked")
    assert hooked.ret == pytest.ExitCode.USAGE_ERROR
    hooked.stderr.fnmatch_lines(
        ["ERROR: --vla-suite hooked: the suite HookSuite lacks idle_action, which every suite defines*"]
    )
