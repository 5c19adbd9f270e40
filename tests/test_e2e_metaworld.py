"""pytest-vla on real MetaWorld episodes, run the way users run it: the demo policy, an export, refusals."""

from __future__ import annotations

import numpy as np
import pytest

from tests.models import linear_policy, write_export

pytestmark = pytest.mark.metaworld


def _trajectory(run, task: str, episode: int):
    return np.load(run / "trajectories" / f"{task}_episode_{episode}.npz")


def test_the_demo_solves_tasks_on_two_workers_and_records_the_protocol(
    pytester: pytest.Pytester, validate_report, validate_junit
) -> None:
    result = pytester.runpytest_subprocess(
        "--vla-suite", "metaworld", "--vla-policy", "demo", "--vla-tasks", "reach-v3,metaworld_easy:button-press-v3",
        "--vla-num-episodes", "2", "-n", "2", "--junitxml", "junit.xml",
    )  # fmt: skip
    result.assert_outcomes(passed=4)
    assert result.ret == pytest.ExitCode.OK
    out = result.stdout.str()
    assert "vla: suite metaworld, 2 tasks x 2 episodes = 4 items, seed 1000, cameras rendered: none" in out
    report = validate_report(pytester.path / "eval_output" / "report.json")
    assert report["suite"] == "metaworld" and report["seed"] == 1000
    assert report["aggregate"]["n_success"] == 4
    assert {row["worker"] for row in report["episodes"]} == {"gw0", "gw1"}
    protocol = report["protocol"]
    assert protocol["versions"]["metaworld"] == "3.0.0"
    assert protocol["seeding"] == "env.seed(seed + episode_index) before every reset"
    assert report["env"]["policy"]["kind"] == "scripted"
    validate_junit(pytester.path / "junit.xml")
    # MetaWorld's goal is its success; the object reached it. Nothing else in these scenes can move.
    assert {(row["progress"], row["stage"]) for row in report["episodes"]} == {(1.0, "at_goal")}
    assert [row["side_effects"] for row in report["episodes"]] == [[]] * 4
    assert (report["aggregate"]["n_watched"], report["aggregate"]["n_side_effects"]) == (4, 0)


def test_experts_cut_short_stop_at_the_stage_they_reached(pytester: pytest.Pytester, validate_report) -> None:
    # 45 steps of MetaWorld's experts: the block is lifted, the door to close pushed a third of its
    # way, the door to open grasped by its handle, the puck touched, and the reach (which never
    # touches its object) untouched; none has succeeded yet.
    result = pytester.runpytest_subprocess(
        "--vla-suite", "metaworld", "--vla-policy", "demo", "--vla-tasks",
        "pick-place-v3,door-close-v3,door-open-v3,plate-slide-v3,reach-v3", "--vla-num-episodes", "1",
        "--vla-max-steps", "45", "-p", "no:xdist",
    )  # fmt: skip
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    rows = validate_report(pytester.path / "eval_output" / "report.json")["episodes"]
    # In the order of --vla-tasks.
    assert [(row["progress"], row["goal"]["furthest_stages"]) for row in rows] == [
        (0.0, {"obj": "lifted"}), (0.0, {"door_link": "moved"}), (0.0, {"door_link": "grasped"}),
        (0.0, {"puck": "touched"}), (0.0, {"obj": "untouched"}),
    ]  # fmt: skip
    result.stdout.fnmatch_lines(
        ["failed episodes by the furthest stage reached: untouched 1, touched 1, grasped 1, moved 1, lifted 1"]
    )


def test_an_episode_is_the_same_alone_after_others_and_on_another_worker(
    pytester: pytest.Pytester, validate_report
) -> None:
    common = ["--vla-suite", "metaworld", "--vla-policy", "demo", "--vla-num-episodes", "3",
              "--vla-save-trajectories", "--vla-max-steps", "40"]  # fmt: skip
    # Two tasks on two workers: push-v3's episodes run on one of them, after each other.
    pytester.runpytest_subprocess(
        *common, "--vla-tasks", "reach-v3,push-v3", "-n", "2", "--dist", "loadscope", "--vla-output", "all"
    )
    # Episode 2 alone, in one process that ran nothing before it.
    pytester.runpytest_subprocess(
        *common, "--vla-tasks", "push-v3", "-k", "ep2", "-p", "no:xdist", "--vla-output", "one"
    )
    everything = validate_report(pytester.path / "all" / "report.json")
    assert len(everything["episodes"]) == 6
    workers = {row["task_index"]: set() for row in everything["episodes"]}
    for row in everything["episodes"]:
        workers[row["task_index"]].add(row["worker"])
    assert sorted(map(len, workers.values())) == [1, 1] and set.union(*workers.values()) <= {"gw0", "gw1"}
    alone = validate_report(pytester.path / "one" / "report.json")
    assert [(row["episode_index"], row["worker"]) for row in alone["episodes"]] == [(2, "main")]
    index = alone["episodes"][0]["task_index"]
    a, b = (_trajectory(pytester.path / run, f"metaworld_task{index}", 2) for run in ("all", "one"))
    np.testing.assert_array_equal(a["states"], b["states"])
    np.testing.assert_array_equal(a["actions"], b["actions"])
    # Episodes differ (the hand starts alike; the objects, which the expert reaches for, do not).
    first = _trajectory(pytester.path / "all", f"metaworld_task{index}", 0)
    assert not np.array_equal(first["states"], a["states"])


def test_an_export_reads_the_corner2_camera_and_the_video_plays_at_80_fps(
    pytester: pytest.Pytester, validate_report
) -> None:
    image = {"source": "image", "camera": "corner2", "size": [32, 32], "layout": "NCHW", "dtype": "float32"}
    write_export(
        pytester.path / "export",
        linear_policy(image_shape=(1, 3, 32, 32), width=4),
        {"image": image, "state": {"source": "state", "pad_to": 8}},
        {"output": "actions", "dim": 4},
    )
    result = pytester.runpytest_subprocess(
        "--vla-suite", "metaworld", "--vla-export", "export", "--vla-tasks", "metaworld:0", "--vla-num-episodes",
        "1", "--vla-max-steps", "3", "--vla-video", "-p", "no:xdist",
    )  # fmt: skip
    result.assert_outcomes(failed=1)
    report = validate_report(pytester.path / "eval_output" / "report.json")
    assert report["protocol"]["cameras_rendered"] == ["corner2"]
    (row,) = report["episodes"]
    assert (row["terminal_reason"], row["n_steps"]) == ("timeout", 3)
    import imageio.v2 as imageio

    video = imageio.get_reader(pytester.path / "eval_output" / row["video_path"])
    assert video.get_meta_data()["fps"] == 80.0 and video.get_meta_data()["size"] == (480, 480)


def test_an_export_served_by_pytest_vla_serve_runs_the_episode_it_runs_in_process(
    pytester: pytest.Pytester, validate_report, serve_export
) -> None:
    image = {"source": "image", "camera": "corner2", "size": [16, 16], "layout": "NCHW", "dtype": "float32"}
    export = write_export(
        pytester.path / "export",
        linear_policy(image_shape=(1, 3, 16, 16), width=4, chunk=2),
        {"image": image, "state": {"source": "state", "pad_to": 8}},
        {"output": "actions", "dim": 4},
    )
    common = ("--vla-suite", "metaworld", "--vla-tasks", "metaworld:40", "--vla-num-episodes", "1",
              "--vla-max-steps", "4", "--vla-save-trajectories", "-p", "no:xdist")  # fmt: skip
    runs = {"in_process": ("--vla-export", str(export)), "served": ("--vla-policy-server", serve_export(export))}
    for output, policy in runs.items():
        pytester.runpytest_subprocess(*common, *policy, "--vla-output", output).assert_outcomes(failed=1)
    a, b = (np.load(pytester.path / output / "trajectories" / "metaworld_task40_episode_0.npz") for output in runs)
    assert a["actions"].shape == (4, 4)
    np.testing.assert_array_equal(a["actions"], b["actions"])
    np.testing.assert_array_equal(a["states"], b["states"])
    served = validate_report(pytester.path / "served" / "report.json")
    assert (served["env"]["policy"]["kind"], served["protocol"]["policy_client"]) == ("served", "vla-eval")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        # LIBERO's demo export: the first mismatch it meets is named.
        (["--vla-export", "demo"], "*demo/vla_export.json: action.dim is 7 but metaworld actions have 4 values"),
        (["--vla-policy", "demo", "--vla-tasks", "push-v9"], "*unknown MetaWorld family or task 'push-v9'*"),
        (["--vla-policy", "demo", "--vla-tasks", "metaworld_hard:6"], "*metaworld_hard has tasks 0..5*"),
        # Said at once, without waiting for a server that nothing listens as.
        (
            ["--vla-policy-server", "ws://127.0.0.1:9", "--vla-policy-protocol", "openpi"],
            "the metaworld suite has no client for openpi servers: serve the export with pytest-vla serve*",
        ),
    ],
)
def test_refusals_name_the_suites_choices_before_any_episode(pytester: pytest.Pytester, args, message) -> None:
    result = pytester.runpytest_subprocess("--vla-suite", "metaworld", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])
    assert "Traceback" not in result.stderr.str()


def test_k_selects_a_task_by_its_name(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest_subprocess(
        "--vla-suite", "metaworld", "--vla-policy", "demo", "--vla-tasks", "metaworld_hard", "--vla-num-episodes",
        "2", "--collect-only", "-q", "-k", "push-v3",
    )  # fmt: skip
    assert [line for line in result.stdout.lines if line.startswith("metaworld/")] == [
        "metaworld/metaworld_hard:4::ep0",
        "metaworld/metaworld_hard:4::ep1",
    ]
