"""pytest-vla run the way users run it, up to the point where episodes would start.

These need LIBERO's task catalogue but build no environment, so they take seconds.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.models import camera_export, linear_policy, privileged_policy, state_only_export, write_export


@pytest.fixture
def export(pytester: pytest.Pytester) -> Path:
    return state_only_export(pytester.path / "export")


def test_plugin_is_inert_without_an_export(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_plain(): pass")
    result = pytester.runpytest("-q")
    result.assert_outcomes(passed=1)
    assert "vla:" not in result.stdout.str()
    assert not (pytester.path / "eval_output").exists()


def test_one_item_per_task_episode_with_stable_readable_ids(pytester: pytest.Pytester, export: Path) -> None:
    # A test file in the directory is not collected: without named paths, pytest-vla runs episodes only.
    pytester.makepyfile("def test_unrelated(): pass")
    result = pytester.runpytest(
        "--vla-export", str(export), "--vla-tasks", "libero_object:3,libero_goal", "--vla-num-episodes", "2",
        "--collect-only", "-q",
    )  # fmt: skip
    ids = [line for line in result.stdout.lines if line.startswith("libero/")]
    assert ids[:3] == ["libero/libero_object:3::ep0", "libero/libero_object:3::ep1", "libero/libero_goal:0::ep0"]
    assert len(ids) == 2 + 10 * 2
    assert "test_unrelated" not in result.stdout.str()
    assert not (pytester.path / "eval_output" / "report.json").exists()


def test_named_paths_are_collected_beside_the_episodes(pytester: pytest.Pytester, export: Path) -> None:
    pytester.makepyfile(test_mine="def test_mine(): pass")
    result = pytester.runpytest(
        "test_mine.py", "--vla-export", str(export), "--vla-tasks", "libero_object:0", "--collect-only", "-q"
    )
    assert "test_mine.py::test_mine" in result.stdout.str()
    assert "libero/libero_object:0::ep2" in result.stdout.str()


def test_keyword_selection_and_ini_keys(pytester: pytest.Pytester, export: Path) -> None:
    pytester.makeini(f"[pytest]\nvla_export = {export}\nvla_tasks = libero_spatial\nvla_num_episodes = 4\n")
    result = pytester.runpytest("--collect-only", "-q", "-k", "libero_spatial:7 or ep3")
    ids = [line for line in result.stdout.lines if line.startswith("libero/")]
    expected = [f"libero/libero_spatial:{t}::ep{n}" for t in range(10) for n in range(4) if t == 7 or n == 3]
    assert ids == expected


@pytest.mark.parametrize(
    ("args", "culprit"),
    [
        (["--vla-tasks", "libero_99"], "--vla-tasks: unknown LIBERO family 'libero_99'"),
        (
            ["--vla-tasks", "libero_object:10"],
            "'libero_object:10': task index out of range (libero_object has tasks 0..9)",
        ),
        (["--vla-num-episodes", "0"], "--vla-num-episodes must be in 1..50"),
        (["--vla-num-episodes", "51"], "--vla-num-episodes must be in 1..50"),
        (["--vla-num-episodes", "three"], "--vla-num-episodes must be an integer, got 'three'"),
        (["--vla-max-steps", "0"], "--vla-max-steps must be at least 1"),
        (["--vla-suite", "calvin"], "--vla-suite: unknown suite 'calvin'"),
    ],
)
def test_bad_options_stop_before_any_episode(
    pytester: pytest.Pytester, export: Path, args: list[str], culprit: str
) -> None:
    result = pytester.runpytest_subprocess("--vla-export", str(export), *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    _assert_one_line_error(result, culprit)


def _corrupt_model(directory: Path) -> None:
    state_only_export(directory)
    (directory / "model.onnx").write_bytes(b"\x08\x01garbage")


def _unbound_input(directory: Path) -> None:
    write_export(directory, linear_policy(image_shape=(1, 3, 8, 8)), {"state": {"source": "state"}})


def _wrong_action_dim(directory: Path) -> None:
    write_export(directory, linear_policy(width=6), {"state": {"source": "state"}}, {"output": "actions", "dim": 6})


def _bad_json(directory: Path) -> None:
    state_only_export(directory)
    (directory / "vla_export.json").write_text('{"format": ')


def _unknown_observation_key(directory: Path) -> None:
    write_export(directory, privileged_policy({"grip": [1, 2]}), {"grip": {"source": "obs", "key": "gripper_qpos"}})


def _binding_the_model_lacks(directory: Path) -> None:
    state_only_export(directory)
    manifest = json.loads((directory / "vla_export.json").read_text())
    manifest["inputs"]["wrist"] = {"source": "image", "camera": "wrist", "size": [8, 8]}
    (directory / "vla_export.json").write_text(json.dumps(manifest))


def _input_bound_twice(directory: Path) -> None:
    state_only_export(directory)
    text = (directory / "vla_export.json").read_text()
    (directory / "vla_export.json").write_text(
        text.replace('"inputs": {', '"inputs": {"state": {"source": "state"}, ', 1)
    )


def _nan_policy(directory: Path) -> None:
    state_only_export(directory, fill=float("nan"))


@pytest.mark.parametrize(
    ("make", "culprit"),
    [
        (_corrupt_model, "model.onnx: onnx cannot parse it"),
        (_unbound_input, "model input(s) ['image'] are not bound in 'inputs'"),
        (_wrong_action_dim, "action.dim is 6 but libero actions have 7 values"),
        (_bad_json, "vla_export.json: not valid JSON"),
        (
            _unknown_observation_key,
            "inputs.grip.key: 'gripper_qpos' is not a libero observation of task libero_object:0 "
            "(did you mean 'robot0_gripper_qpos'",
        ),
        (_input_bound_twice, "vla_export.json: 'state' appears twice in one object"),
        (
            _binding_the_model_lacks,
            "vla_export.json: inputs.wrist is not an input of model.onnx (model inputs: ['state'])",
        ),
        (_nan_policy, "export: on a synthetic observation: output 'actions' holds non-finite values"),
    ],
)
def test_broken_exports_are_named_in_one_line(pytester: pytest.Pytester, make, culprit: str) -> None:
    make(pytester.path / "export")
    result = pytester.runpytest_subprocess("--vla-export", "export", "--vla-tasks", "libero_object:0")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    _assert_one_line_error(result, culprit)


def test_missing_export_and_unwritable_output(pytester: pytest.Pytester, export: Path) -> None:
    missing = pytester.runpytest_subprocess("--vla-export", "no_such_export")
    _assert_one_line_error(missing, "export directory not found")
    (pytester.path / "occupied").write_text("a file, not a directory")
    unwritable = pytester.runpytest_subprocess("--vla-export", str(export), "--vla-output", "occupied/out")
    assert unwritable.ret == pytest.ExitCode.USAGE_ERROR
    _assert_one_line_error(unwritable, "--vla-output")


def _assert_one_line_error(result: pytest.RunResult, culprit: str) -> None:
    errors = [line for line in result.stderr.lines if line.startswith("ERROR: ")]
    assert len(errors) == 1, result.stderr.str()
    assert culprit in errors[0]
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    assert not json.dumps(result.stdout.lines).count("libero/libero_")


# --- the simulator preflight on real LIBERO -----------------------------------------------------


@pytest.mark.libero
def test_a_mujoco_outside_the_protocols_window_is_named_before_the_stack_imports(
    pytester: pytest.Pytester, export: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What pip would leave after `pip install mujoco==3.4.0`, as the metadata the preflight reads.
    info = tmp_path / "site" / "mujoco-3.4.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: mujoco\nVersion: 3.4.0\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "site"))
    result = pytester.runpytest_subprocess("--vla-export", str(export), "--vla-tasks", "libero_spatial:5")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    _assert_one_line_error(
        result,
        "preflight failed [dep-version-conflict]: mujoco 3.4.0 is installed; the protocol is defined on "
        "mujoco==3.3.2; remedy: pip install 'mujoco==3.3.2'",
    )


@pytest.mark.libero
def test_an_unusable_gl_backend_is_named_before_any_episode(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, validate_report
) -> None:
    camera_export(pytester.path / "export")
    monkeypatch.setenv("MUJOCO_GL", "wgl")  # Windows' backend: MuJoCo refuses it here
    result = pytester.runpytest_subprocess("--vla-export", "export", "--vla-tasks", "libero_object:0")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    result.stderr.fnmatch_lines([
        "ERROR: preflight failed ?import-error?: importing the simulation stack: RuntimeError: invalid value for "
        "environment variable MUJOCO_GL: wgl; remedy: *"
    ])  # fmt: skip
    report = validate_report(pytester.path / "eval_output" / "report.json")
    assert report["preflight"]["failure"] == "import-error" and report["episodes"] == []


@pytest.mark.libero
def test_a_real_preflight_measures_what_the_estimate_needs(pytester: pytest.Pytester, validate_report) -> None:
    camera_export(pytester.path / "export")
    run = ["--vla-export", "export", "--vla-tasks", "libero_spatial:4,libero_spatial:5", "--vla-num-episodes", "1",
           "--vla-max-steps", "2", "-p", "no:xdist"]  # fmt: skip
    preview = pytester.runpytest_subprocess(*run, "--vla-cost-preview")
    assert preview.ret == pytest.ExitCode.OK
    preview.stdout.fnmatch_lines(["vla: estimate: 2 tasks, 2 episodes on 1 worker(s): about *m*s wall time, $0.00*"])
    result = pytester.runpytest_subprocess(*run)
    result.assert_outcomes(failed=2)
    # The preview checked one scene; the run checks both, task 5 (MuJoCo 3.4's misplaced bowl) included.
    result.stdout.fnmatch_lines(["vla: preflight passed in *: libero_spatial:4 built and reset, agentview rendered "
                                 "and not blank, 2 task(s) at rest*; "
                                 "the policy answered its first observation"])  # fmt: skip
    report = validate_report(pytester.path / "eval_output" / "report.json")
    preflight = report["preflight"]
    assert preflight["settled_tasks"] == ["libero_spatial:4", "libero_spatial:5"]
    timings = preflight["timings"]
    assert timings["env_build_s"] > 0 and timings["reset_s"] > 0 and timings["step_s"] > 0
    assert timings["render_s"] > 0 and timings["inference_s"] > 0
    assert report["cost"]["estimated_wall_s"] > 0
    again = pytester.runpytest_subprocess(*run, "--vla-cost-preview")
    again.stdout.fnmatch_lines(["vla: preflight reused from an identical earlier run: *"])
