"""report.html in a real browser: Debian's chromium, driven by Playwright, offline.

Playwright cannot download its own browsers here; ``scripts/test.sh`` installs Debian's
``chromium`` where it can (root and apt-get), and the tests skip with the reason without it.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_vla.report.compare import compare
from pytest_vla.report.html import render_html, write_comparison_html, write_html
from pytest_vla.report.schema import Stage, TaskSpec, TerminalReason, episode_row, goal_record
from pytest_vla.report.shards import Shard
from pytest_vla.report.writer import Invocation, ReportWriter, RunInfo

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
    """The page, offline: a script error, or any request beyond the files under the page's directory, is noted.

    A file under the directory that is not there (a hostile report's video) is the page's own business.
    """
    context = browser.new_context(offline=True)
    page = context.new_page()
    problems: list[str] = []
    inside = page_path.parent.as_uri() + "/"
    page.on("pageerror", lambda error: problems.append(f"script error: {error}"))
    page.on("request", lambda request: None if request.url.startswith(inside) else problems.append(request.url))
    page.on("dialog", lambda dialog: (problems.append(f"dialog: {dialog.message}"), dialog.dismiss()))
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
    # The first screen says where the failures stopped: the timeouts never touched the bowl; the
    # errored episodes never reset, so they stopped nowhere.
    assert page.locator("#stages h3").all_inner_texts() == ["untouched: 2 failed episodes"]
    assert page.locator("#stages figure video").count() == 2
    assert [row.split("\t")[-2:] for row in page.locator("#tasks tbody tr").all_inner_texts()] == [
        ["0.0% [0.0%, 0.0%]", "0/2"], ["", ""], ["100.0% [100.0%, 100.0%]", "0/2"]
    ]  # fmt: skip  # progress, then the episodes with side effects
    assert problems == []


def test_a_failures_video_plays_in_place(browser, pytester, run_with_videos) -> None:
    page, problems = _open(browser, pytester.path / "eval_output" / "report.html")
    # The two timeouts; errored episodes never reset, successes not kept.
    assert page.locator("#episodes video").count() == 2
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


# Pages stay inert: no string of a report or comparison becomes markup or script, and the page renders
# whatever the values are. Each payload below ends up in every string field (see hostile_strings).
PAYLOADS = (
    "__REPORT_JSON__",
    "__TITLE__ <img src=https://evil.example/title onerror=window.__pwned=1>",
    "__COMPARISON_JSON__ __DATA_JSON__",
    "__SHARED_JS__ __COMPARISON_CSS__",
    "</script><script>window.__pwned=1</script>",
    "<!--<script>",
    "<img src=https://evil.example/img onerror=window.__pwned=1>",
    "\u2028\u2029</title></h1><svg onload=window.__pwned=1>",
    "&lt;&amp; \ud800 ${window.__pwned=1}",  # a lone surrogate
    "https:evil.example/x.mp4",
)
# Values a numeric field may hold in a report built in memory or changed by pytest_vla_modify_report.
WRONG_NUMBERS = (math.nan, math.inf, -math.inf, None, True, [], {"toString": "x", "valueOf": "y"}, PAYLOADS[6])


def hostile_strings(value: Any, shift: int) -> Any:
    """``value`` with its string values, all of them, replaced by payloads: the n-th by PAYLOADS[n + shift].

    Over ``shift`` in ``range(len(PAYLOADS))`` every string field holds every payload once.
    """
    count = itertools.count(shift)

    def walk(item: Any) -> Any:
        if isinstance(item, str):
            return PAYLOADS[next(count) % len(PAYLOADS)]
        if isinstance(item, dict):  # with one key more, a payload: some maps' keys are free-form (protocol, env)
            fields = {key: walk(field) for key, field in item.items()}
            return {**fields, PAYLOADS[next(count) % len(PAYLOADS)]: None}
        if isinstance(item, list):
            return [walk(field) for field in item]
        return item

    return walk(value)


def wrong_numbers(value: Any, wrong: Any) -> Any:
    """``value`` with every number, boolean and null replaced by ``wrong``."""
    if isinstance(value, dict):
        return {key: wrong_numbers(field, wrong) for key, field in value.items()}
    if isinstance(value, list):
        return [wrong_numbers(field, wrong) for field in value]
    return value if isinstance(value, str) else wrong


def _run_report(output: Path, outcomes: dict[int, str], *, videos: bool) -> dict[str, Any]:
    """A report with every kind of field filled in (built in memory: nothing runs)."""
    tasks = (TaskSpec("fam_a", 0, "do the first thing", 50), TaskSpec("fam_b", 1, "do another", 60, "fam_a:0"))
    info = RunInfo(
        suite="fake", seed=7, tasks=tasks, num_episodes=2, repeat=2,
        protocol={"settle_steps": 10, "camera": "agentview"},
        provider="CPUExecutionProvider", workers=2, policy={"kind": "onnx-export", "export_dir": str(output / "export"),
        "export_files": [{"name": "model.onnx", "sha256": "ab" * 32, "bytes": 3}]}, shard=Shard(0, 2),
        invocation=Invocation(["--vla-export", "export", "-k", "fam_a"], str(output)),
    )  # fmt: skip
    writer = ReportWriter(info, output)
    writer.expect([task.episode(episode) for task in tasks for episode in range(2)])
    for index, reason in outcomes.items():
        task = tasks[index // 2]
        video = str(output / "videos" / f"{task.family}_{index}.mp4") if videos else None
        writer.add(episode_row(
            task.episode(index % 2), reason=TerminalReason(reason), instruction=task.instruction,
            max_steps=task.max_steps, worker="gw1", n_steps=12, wall_clock_s=1.5, env_construction_s=0.3,
            error_message=None if reason == "success" else "onnxruntime: node 'x' failed", provider="CPU",
            cuda_visible_devices="0", trajectory_path=str(output / "trajectories" / "t.npz"), video_path=video,
            goal=goal_record({"(on a_1 b_1)": reason == "success", "(open c_1)": True}, {"(on a_1 b_1)": True,
                             "(open c_1)": True}, 4, {"a_1": Stage.LIFTED, "c_1": Stage.AT_GOAL}),
        ))  # fmt: skip
    repeat = tasks[0].episode(0, trial=1)  # a second trial (--vla-repeat): the tallies' pass@k and pass^k
    writer.add(episode_row(repeat, reason=TerminalReason.TIMEOUT, instruction="again", max_steps=50, worker="gw0"))
    writer.preflight = {"passed": True, "failure": None, "message": "ok", "timings": {"step_s": 0.1}}
    writer.cost = {"total_usd": 0.5, "by_task": {"fam_a": 0.25, "fam_b": 0.25}, "assumptions": ["one GPU"]}
    report = writer.build()
    report["notes"] = "a note"
    report["merged_from"] = [{"report": str(output / "report.json"), "host": "node-1", "wall_clock_s": 3.5}]
    return report


@pytest.fixture(scope="module")
def full_report(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, Any]]:
    """A run's report with its comparison against a baseline, and that comparison on its own."""
    output = tmp_path_factory.mktemp("full")
    base = _run_report(output / "base", {0: "success", 1: "success", 2: "success"}, videos=False)
    report = _run_report(output, {0: "success", 1: "timeout", 2: "adapter_error"}, videos=True)
    comparison = compare(base, report, margin=0.05, base_name=str(output / "base"), new_name=str(output)).to_json()
    return {**report, "comparison": comparison}, comparison


def _inert(page: Any, problems: list[str], scripts: int) -> None:
    """Nothing of the page's data became markup, ran, or asked for anything beyond the page's directory."""
    assert problems == []
    assert page.evaluate("window.__pwned") is None
    assert page.locator("script").count() == scripts
    assert page.locator("img, svg, iframe, object, embed, a, form, base, link, meta[http-equiv]").count() == 0
    assert page.evaluate("[...document.querySelectorAll('*')].flatMap((e) => e.getAttributeNames())"
                         ".filter((name) => name.startsWith('on'))") == []  # fmt: skip


def _text(value: str) -> str:
    """What the page's title shows for a string: a lone surrogate, which markup cannot hold, as U+FFFD."""
    return re.sub("[\ud800-\udfff]", "\ufffd", value)


def test_a_repeated_run_shows_pass_at_k_and_names_each_trial(browser, tmp_path, full_report) -> None:
    report = full_report[0]
    write_html(report, tmp_path)
    page, problems = _open(browser, tmp_path / "report.html")
    assert problems == []
    at, hat = report["aggregate"]["pass_at_k"], report["aggregate"]["pass_hat_k"]
    assert page.text_content("#aggregate-count") == (
        f"{report['aggregate']['n_success']} of 4 episodes succeeded · pass@1 {100 * at['1']:.1f}%, "
        f"pass@2 {100 * at['2']:.1f}%, pass^2 {100 * hat['2']:.1f}% over 3 init states"
    )
    assert page.locator("#episodes tbody td:nth-child(2)").all_text_contents() == ["0", "0 trial 1", "1", "0"]


@pytest.mark.parametrize("shift", range(len(PAYLOADS)))
def test_no_string_of_a_report_becomes_markup_or_script(browser, tmp_path, full_report, shift) -> None:
    report = hostile_strings(full_report[0], shift)
    write_html(report, tmp_path)
    page, problems = _open(browser, tmp_path / "report.html")
    _inert(page, problems, scripts=3)
    aggregate = report["aggregate"]
    title = f"{report['suite']}: {aggregate['n_success']}/{aggregate['n_total']} episodes succeeded"
    assert page.text_content("h1") == _text(title)
    assert page.title() == "pytest-vla: " + _text(title)
    assert page.locator("#tasks tbody tr").count() == len(report["task_results"])
    assert page.locator("#comparison tbody tr").count() == len(report["comparison"]["rows"])
    errors = page.locator("#episodes tbody td:nth-child(6)").all_text_contents()
    assert errors == [row["error_message"] or "" for row in report["episodes"]]
    shown = json.loads(page.text_content("#protocol"))  # laid out to the end
    assert shown["harness_version"] == report["harness_version"]


@pytest.mark.parametrize("wrong", WRONG_NUMBERS, ids=repr)
def test_a_page_renders_whatever_its_numbers_are(browser, tmp_path, full_report, wrong) -> None:
    report = wrong_numbers(full_report[0], wrong)
    write_html(report, tmp_path)
    page, problems = _open(browser, tmp_path / "report.html")
    _inert(page, problems, scripts=3)
    assert page.locator("#episodes tbody tr").count() == 4 and page.locator("#families tbody tr").count() == 2
    if isinstance(wrong, float):  # shown as such
        assert page.text_content("#aggregate-rate") == str(wrong).replace("inf", "Infinity").replace("nan", "NaN")
    assert page.text_content("#protocol") != ""


@pytest.mark.parametrize("shift", range(len(PAYLOADS)))
def test_no_string_of_a_comparison_becomes_markup_or_script(browser, tmp_path, full_report, shift) -> None:
    comparison = hostile_strings(full_report[1], shift)
    write_comparison_html(comparison, tmp_path / "compare.html")
    page, problems = _open(browser, tmp_path / "compare.html")
    _inert(page, problems, scripts=2)
    assert page.text_content("h1") == _text(f"{comparison['verdict']}: {comparison['new']} vs {comparison['base']}")
    labels = page.locator("#comparison tbody td:first-child").all_text_contents()
    assert labels == [row["label"] for row in comparison["rows"]]
    assert page.text_content("#comparison p.muted").startswith(comparison["test"])


@pytest.mark.parametrize("wrong", WRONG_NUMBERS, ids=repr)
def test_a_comparison_page_renders_whatever_its_numbers_are(browser, tmp_path, full_report, wrong) -> None:
    write_comparison_html(wrong_numbers(full_report[1], wrong), tmp_path / "compare.html")
    page, problems = _open(browser, tmp_path / "compare.html")
    _inert(page, problems, scripts=2)
    assert page.locator("#comparison tbody tr").count() == len(full_report[1]["rows"])
    assert "pairs with a harness error" in page.text_content("#comparison p.muted")


# A row's video_path -> the link the page gets: only paths under the page's directory, never a URL.
VIDEO_LINKS = {
    "videos/a.mp4": "videos/a.mp4",
    "{output}/videos/b #1?.mp4": "videos/b%20%231%3F.mp4",  # absolute, as the rollout writes them
    "https:evil.example/x.mp4": None,
    "https://evil.example/x.mp4": None,
    "javascript:window.__pwned=1": None,
    "data:video/mp4;base64,AAAA": None,
    "//evil.example/x.mp4": None,
    "/etc/passwd": None,
    "../outside.mp4": None,
    "videos/../../outside.mp4": None,
    "{output}/../outside.mp4": None,
    ".": None,
    "": None,
}


def test_a_video_is_linked_only_under_the_pages_directory(tmp_path, full_report) -> None:
    paths = [path.format(output=tmp_path) for path in VIDEO_LINKS]
    rows = [{**full_report[0]["episodes"][0], "video_path": path} for path in paths]
    page = render_html({**full_report[0], "episodes": rows}, tmp_path)
    data = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page, re.DOTALL)
    assert data is not None
    assert [row["video_href"] for row in json.loads(data.group(1))["episodes"]] == list(VIDEO_LINKS.values())


def test_a_video_without_a_link_shows_its_path(browser, tmp_path, full_report) -> None:
    paths = [path.format(output=tmp_path) for path in VIDEO_LINKS if path]
    rows = [{**full_report[0]["episodes"][0], "video_path": path} for path in paths]
    write_html({**full_report[0], "episodes": rows}, tmp_path)
    page, problems = _open(browser, tmp_path / "report.html")
    assert problems == []
    cells = page.locator("#episodes tbody td:nth-child(7)")
    linked = [cells.nth(n).locator("video").get_attribute("src") if cells.nth(n).locator("video").count() else None
              for n in range(len(paths))]  # fmt: skip
    assert linked == [href for path, href in VIDEO_LINKS.items() if path]
    assert [cells.nth(n).text_content() for n, href in enumerate(linked) if href is None] == [
        path for path, href in zip(paths, linked, strict=True) if href is None
    ]


def test_the_pages_data_cannot_end_its_script_element(tmp_path, full_report) -> None:
    """Checked without a browser: placeholders in the data stay as they are; in the data, no "<", ">" or "&",
    no raw U+2028 or U+2029, and no NaN or Infinity."""
    report = {**hostile_strings(wrong_numbers(full_report[0], math.nan), 0), "suite": "__DATA_JSON__"}
    page = render_html(report, tmp_path)
    assert "<h1>__DATA_JSON__: " in page
    start = page.index('id="report-data">') + len('id="report-data">')
    data = page[start : page.index("</script>", start)]
    assert not set("<>&\u2028\u2029") & set(data)
    assert json.loads(data, parse_constant=lambda name: pytest.fail(f"{name} in the page's JSON"))["suite"] == (
        "__DATA_JSON__"
    )
