"""pytest-vla on real ALOHA sim episodes, run the way users run it: the demo policy, an export's camera."""

from __future__ import annotations

import imageio.v2 as imageio
import numpy as np
import pytest

from tests.models import linear_policy, write_export

pytestmark = pytest.mark.aloha


def test_the_demo_solves_both_tasks_on_two_workers(pytester: pytest.Pytester, validate_report) -> None:
    result = pytester.runpytest_subprocess(
        "--vla-suite", "aloha", "--vla-policy", "demo", "--vla-num-episodes", "2", "-n", "2",
        "--vla-save-trajectories",
    )  # fmt: skip
    result.assert_outcomes(passed=4)
    assert result.ret == pytest.ExitCode.OK
    assert "vla: suite aloha, 2 tasks x 2 episodes = 4 items, seed 1000, cameras rendered: none" in result.stdout.str()
    # ALOHA names no objects the settle check watches: the preflight claims none at rest.
    result.stdout.fnmatch_lines(["vla: preflight passed*task(s) stepped idle, 0 with objects watched and at rest*"])
    # dm_control's render contexts are freed with the physics: no tracebacks at exit.
    assert "Traceback" not in result.stderr.str() and "Traceback" not in result.stdout.str()
    report = validate_report(pytester.path / "eval_output" / "report.json")
    assert [(row["task_index"], row["episode_index"]) for row in report["episodes"]] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert {row["worker"] for row in report["episodes"]} == {"gw0", "gw1"}
    assert report["protocol"]["versions"]["gym-aloha"] == "0.1.5"
    assert report["env"]["policy"]["kind"] == "scripted"
    saved = np.load(pytester.path / "eval_output" / "trajectories" / "aloha_task0_episode_0.npz")
    assert saved["actions"].shape[1] == 14 and saved["states"].shape[1] == 14
    # gym-aloha's staged reward reached its last level: every condition held, every object at its goal.
    assert {(row["progress"], row["stage"]) for row in report["episodes"]} == {(1.0, "at_goal")}
    assert [row["side_effects"] for row in report["episodes"]] == [[]] * 4  # the scenes hold nothing else


def test_a_demo_cut_short_stops_at_the_stage_its_reward_reached(pytester: pytest.Pytester, validate_report) -> None:
    # 200 steps: the scripted transfer has lifted the cube (reward 2 of 4), the insertion touched nothing yet.
    result = pytester.runpytest_subprocess(
        "--vla-suite", "aloha", "--vla-policy", "demo", "--vla-num-episodes", "1", "--vla-max-steps", "200",
        "-p", "no:xdist",
    )  # fmt: skip
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    report = validate_report(pytester.path / "eval_output" / "report.json")
    insertion, transfer = report["episodes"]
    assert (insertion["progress"], insertion["stage"], insertion["goal"]["most_satisfied"]) == (0.0, "untouched", [])
    assert (transfer["progress"], transfer["stage"]) == (0.5, "lifted")
    lifted = ["right gripper touches red_box", "red_box lifted by the right gripper"]
    assert transfer["goal"]["most_satisfied"] == lifted
    assert transfer["goal"]["furthest_stages"] == {"red_box": "lifted"}
    result.stdout.fnmatch_lines(["failed episodes by the furthest stage reached: untouched 1, lifted 1"])


def test_an_export_reads_the_top_camera_and_the_video_plays_at_50_fps(
    pytester: pytest.Pytester, validate_report
) -> None:
    image = {"source": "image", "camera": "top", "size": [24, 32], "layout": "NCHW", "dtype": "float32"}
    write_export(
        pytester.path / "export",
        linear_policy(image_shape=(1, 3, 24, 32), width=14, state=False),
        {"image": image},
        {"output": "actions", "dim": 14},
    )
    result = pytester.runpytest_subprocess(
        "--vla-suite", "aloha", "--vla-export", "export", "--vla-tasks", "aloha:transfer_cube",
        "--vla-num-episodes", "1", "--vla-max-steps", "2", "--vla-video", "-p", "no:xdist",
    )  # fmt: skip
    result.assert_outcomes(failed=1)
    report = validate_report(pytester.path / "eval_output" / "report.json")
    assert report["protocol"]["cameras_rendered"] == ["top"]
    (row,) = report["episodes"]
    assert (row["task_index"], row["terminal_reason"], row["n_steps"]) == (1, "timeout", 2)
    meta = imageio.get_reader(pytester.path / "eval_output" / row["video_path"]).get_meta_data()
    assert meta["fps"] == 50.0 and meta["size"] == (640, 480)


def test_an_unknown_task_is_refused_naming_the_tasks(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess("--vla-suite", "aloha", "--vla-policy", "demo", "--vla-tasks", "aloha:peg")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --vla-tasks: 'aloha:peg': aloha has tasks 0..1: insertion, transfer_cube"])
