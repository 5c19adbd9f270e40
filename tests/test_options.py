"""Options as users type them: path ini keys relative to their ini file, bare flags, numbers refused in one line."""

from __future__ import annotations

import json

import pytest

BUDGET = ["--vla-tasks", "fake:0", "--vla-num-episodes", "1", "-p", "no:cacheprovider", "-p", "no:xdist"]


def test_path_ini_keys_are_relative_to_the_ini_file_and_the_command_line_to_the_working_directory(
    fake, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, validate_report
) -> None:
    fake({}, *BUDGET, "--vla-output", "baseline_run")  # an earlier run, for the baseline key
    pytester.makeini(
        "[pytest]\nvla_export = export\nvla_suite = fake\nvla_output = results\nvla_baseline = baseline_run\n"
    )
    subdirectory = pytester.mkdir("sub")
    monkeypatch.chdir(subdirectory)
    monkeypatch.setenv("FAKE_SUITE_SCRIPT", json.dumps({"0": "succeed"}))
    # From a subdirectory, as pytest's own "paths" ini keys (testpaths' neighbours) resolve.
    result = pytester.runpytest_subprocess(*BUDGET)
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    report = validate_report(pytester.path / "results" / "report.json")
    assert report["env"]["export_dir"] == str(pytester.path / "export")
    assert report["comparison"]["base"] == str(pytester.path / "baseline_run")
    assert not (subdirectory / "results").exists()
    # On the command line a path is the working directory's.
    assert pytester.runpytest_subprocess(*BUDGET, "--vla-output", "here").ret == pytest.ExitCode.OK
    assert (subdirectory / "here" / "report.json").is_file()


@pytest.mark.parametrize(
    ("args", "video"),
    [(["--vla-video"], "all"), (["--vla-video", "failures"], "failures"), (["--vla-video=all"], "all")],
)
def test_vla_video_alone_records_every_episode(fake, pytester: pytest.Pytester, validate_report, args, video) -> None:
    result = fake({"0": "succeed"}, *BUDGET, *args)
    assert result.ret == pytest.ExitCode.OK, result.stderr.str()
    (row,) = validate_report(pytester.path / "eval_output" / "report.json")["episodes"]
    assert (row["video_path"] is not None) is (video == "all")  # a success is kept only under "all"


@pytest.mark.parametrize(
    "args",
    [
        ["--vla-gpu-hourly-usd", "inf"],
        ["--vla-max-cost-usd", "Infinity"],
        ["--vla-episode-timeout", "inf"],
        ["--vla-preflight-timeout", "nan"],
        ["--vla-min-success-rate", "nan"],
    ],
)
def test_non_finite_numbers_are_refused_in_one_line(fake, args: list[str]) -> None:
    result = fake({}, *BUDGET, *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {args[0]} must be *, got '{args[1]}'"])
    assert "Traceback" not in result.stderr.str()


@pytest.mark.parametrize("entry", ["libero_object:²", "libero_object:٣", "libero_object:-1", "libero_object:10"])
def test_a_libero_task_index_is_ascii_digits_within_the_family(entry: str) -> None:
    from pytest_vla.errors import SuiteError
    from pytest_vla.suites.libero import LiberoSuite

    with pytest.raises(SuiteError, match=r"task index out of range \(libero_object has tasks 0\.\.9\)"):
        LiberoSuite().resolve_tasks([entry])
