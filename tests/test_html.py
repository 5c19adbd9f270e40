"""report.html in a real browser: Debian's chromium, driven by Playwright, offline.

Playwright cannot download its own browsers here; ``scripts/test.sh`` installs Debian's
``chromium`` where it can (root and apt-get), and the tests skip with the reason without it.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium")


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield browser
        browser.close()


@pytest.fixture
def run_with_videos(fake, pytester: pytest.Pytester) -> dict[str, Any]:
    """A run of three fake tasks (one succeeds, one fails, one errors) keeping the failures' videos."""
    fake({"0": "succeed", "2": "build_error"}, "--vla-tasks", "fake:0,fake:1,fake:2", "--vla-num-episodes", "2",
         "-p", "no:xdist", "--vla-video", "failures")  # fmt: skip
    return json.loads((pytester.path / "eval_output" / "report.json").read_text())


def _open(browser: Any, page_path: Path) -> tuple[Any, list[str]]:
    """The page, offline: any request beyond the output directory's own files is refused and noted."""
    context = browser.new_context(offline=True)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"script error: {error}"))
    page.on("requestfailed", lambda request: problems.append(f"request failed: {request.url}"))
    page.on("request", lambda request: None if request.url.startswith("file://") else problems.append(request.url))
    page.goto(page_path.as_uri())
    return page, problems


def test_the_page_shows_the_reports_numbers_and_filters_to_failures(browser, pytester, run_with_videos) -> None:
    report = run_with_videos
    page, problems = _open(browser, pytester.path / "eval_output" / "report.html")
    aggregate = report["aggregate"]
    assert page.inner_text("#aggregate-rate") == f"{100 * aggregate['success_rate']:.1f}%" == "33.3%"
    low, high = aggregate["ci95"]
    assert page.inner_text("#aggregate-ci") == f"95% CI [{100 * low:.1f}%, {100 * high:.1f}%]"
    tasks = [row.split("\t")[:3] for row in page.locator("#tasks tbody tr").all_inner_texts()]
    assert tasks == [["fake:1", "do fake thing 1", "0/2"], ["fake:2", "do fake thing 2", "0/2"],
                     ["fake:0", "do fake thing 0", "2/2"]]  # fmt: skip  # worst first
    assert page.locator("#episodes tbody tr:not([hidden])").count() == 6
    page.check("#failures-only")
    outcomes = page.locator("#episodes tbody tr:not([hidden]) td:nth-child(3)").all_inner_texts()
    assert sorted(outcomes) == ["bddl_failure", "bddl_failure", "timeout", "timeout"]
    assert page.inner_text("#shown").strip() == "4 of 6 shown"
    assert problems == []


def test_a_failures_video_plays_in_place(browser, pytester, run_with_videos) -> None:
    page, problems = _open(browser, pytester.path / "eval_output" / "report.html")
    assert page.locator("video").count() == 2  # the two timeouts; errored episodes never reset, successes not kept
    played = page.evaluate(
        """async () => {
            const video = document.querySelector("video");
            await video.play();
            await new Promise((resolve) => setTimeout(resolve, 300));
            return video.currentTime;
        }"""
    )
    assert played > 0
    assert problems == []


def test_pytest_vla_report_rebuilds_the_page_from_report_json_alone(pytester, run_with_videos) -> None:
    output = pytester.path / "eval_output"
    first = (output / "report.html").read_text()
    (output / "report.html").unlink()
    built = subprocess.run([str(Path(sys.executable).parent / "pytest-vla"), "report", str(output)],
                           capture_output=True, text=True)  # fmt: skip
    assert built.returncode == 0 and built.stdout.strip() == str(output / "report.html")
    assert (output / "report.html").read_text() == first
    broken = subprocess.run([str(Path(sys.executable).parent / "pytest-vla"), "report", str(pytester.path)],
                            capture_output=True, text=True)  # fmt: skip
    assert broken.returncode == 2 and len(broken.stderr.splitlines()) == 1


def test_the_comparison_with_a_baseline_shows_on_the_runs_page_and_on_its_own(browser, fake, pytester) -> None:
    episodes = ("--vla-tasks", "fake:0,fake:1", "--vla-num-episodes", "10", "-p", "no:xdist")
    fake({"0": "succeed", "1": "succeed"}, *episodes, "--vla-output", "base")
    fake({"0": "succeed"}, *episodes, "--vla-output", "new", "--vla-baseline", "base")
    page, problems = _open(browser, pytester.path / "new" / "report.html")
    assert page.is_visible("#comparison-section")
    assert page.inner_text("#comparison .verdict").startswith("REGRESSED (margin 5 pp)")
    rows = page.locator("#comparison tbody tr").all_inner_texts()
    assert [row.split("\t")[0] for row in rows] == ["fake:0", "fake:1", "fake", "overall"]
    assert rows[1].split("\t")[4:8] == ["-100.0", "[-100.0, -52.1]", "10", "0"]
    assert problems == []
    compared = subprocess.run(
        [str(Path(sys.executable).parent / "pytest-vla"), "compare", "base", "new", "--html", "compare.html"],
        cwd=pytester.path, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert compared.returncode == 1, compared.stderr
    page, problems = _open(browser, pytester.path / "compare.html")
    assert page.locator("#comparison tbody tr").all_inner_texts() == rows
    assert problems == []


def test_a_page_without_a_baseline_hides_the_comparison(browser, pytester, run_with_videos) -> None:
    page, _ = _open(browser, pytester.path / "eval_output" / "report.html")
    assert not page.is_visible("#comparison-section")
