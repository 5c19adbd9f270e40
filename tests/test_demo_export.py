"""The built-in demo export (`--vla-export demo`): its committed model, and real successes on LIBERO."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from junitparser.xunit2 import JUnitXml
from onnx import TensorProto, helper

from pytest_vla.export import DEMO_EXPORT_DIR, resolve_export
from pytest_vla.export.manifest import load_manifest

BUILDER = Path(__file__).resolve().parent.parent / "scripts" / "build_demo_export.py"


def _builder():
    spec = importlib.util.spec_from_file_location("build_demo_export", BUILDER)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # onnxscript looks the module up to resolve names
    spec.loader.exec_module(module)
    return module


def test_the_committed_model_is_what_the_generator_builds() -> None:
    builder = _builder()
    committed = onnx.load(DEMO_EXPORT_DIR / builder.MODEL_NAME)
    rebuilt = builder.build_model()
    assert (committed.ir_version, list(committed.opset_import)) == (rebuilt.ir_version, list(rebuilt.opset_import))
    # Byte-compare the graphs: any change to the policy must be rebuilt and committed together.
    assert committed.graph.SerializeToString(deterministic=True) == rebuilt.graph.SerializeToString(deterministic=True)
    assert json.loads((DEMO_EXPORT_DIR / "vla_export.json").read_text()) == builder.MANIFEST


def test_demo_names_the_packaged_export(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_export("demo") == DEMO_EXPORT_DIR
    # A directory of that name is still reachable as a path.
    monkeypatch.chdir(tmp_path)
    assert resolve_export("./demo") == tmp_path / "demo"
    manifest = load_manifest(DEMO_EXPORT_DIR)
    assert manifest.cameras == ()  # state only: its episodes render nothing


@pytest.mark.libero
def test_the_demo_succeeds_on_real_libero_object_episodes(pytester: pytest.Pytester, validate_report) -> None:
    result = pytester.runpytest_subprocess(
        "--vla-export", "demo", "--vla-tasks", "libero_object:0,libero_object:5", "--vla-num-episodes", "1",
        "--junitxml", "junit.xml",
    )  # fmt: skip
    result.assert_outcomes(passed=2)
    assert result.ret == pytest.ExitCode.OK
    assert "cameras rendered: none" in result.stdout.str()
    result.stdout.fnmatch_lines(["libero_object*all*2/2*100.0%*34.2, 100.0*"])

    report = validate_report(pytester.path / "eval_output" / "report.json")
    for row in report["episodes"]:
        # Success is the env's `done`, which also ends the episode before its 280-step budget.
        assert (row["success"], row["terminal_reason"]) == (True, "success")
        assert 0 < row["n_steps"] < row["max_steps"] == 280
        # Every condition of the BDDL goal ("put the X in the basket") held at the end, first then.
        goal = row["goal"]
        assert re.fullmatch(r"\(in [a-z_]+_1 basket_1_contain_region\)", *goal["conditions"])
        assert goal["satisfied_at_end"] == goal["most_satisfied"] == goal["conditions"]
        assert (row["progress"], goal["most_satisfied_step"]) == (1.0, row["n_steps"])
        (moved,) = goal["furthest_stages"]  # the object to put in the basket
        assert goal["conditions"][0].startswith(f"(in {moved} ") and row["stage"] == "at_goal"
    assert report["aggregate"]["success_rate"] == 1.0 == report["aggregate"]["mean_progress"]
    cases = [case for suite in JUnitXml.fromfile(str(pytester.path / "junit.xml")) for case in suite]
    assert len(cases) == 2 and all(case.is_passed for case in cases)


def _demo_with_cameras(directory: Path) -> Path:
    """The demo policy plus two camera inputs it ignores: the harness must render both."""
    model = onnx.load(DEMO_EXPORT_DIR / "demo_policy.onnx")
    model.graph.input.extend(
        [
            helper.make_tensor_value_info("agentview", TensorProto.FLOAT, [1, 3, 64, 64]),
            helper.make_tensor_value_info("wrist", TensorProto.UINT8, [1, 64, 64, 3]),
        ]
    )
    directory.mkdir()
    onnx.save(model, directory / "demo_policy.onnx")
    manifest = json.loads((DEMO_EXPORT_DIR / "vla_export.json").read_text())
    manifest["inputs"]["agentview"] = {"source": "image", "camera": "agentview", "size": [64, 64]}
    manifest["inputs"]["wrist"] = {
        "source": "image",
        "camera": "wrist",
        "size": [64, 64],
        "layout": "NHWC",
        "dtype": "uint8",
    }
    (directory / "vla_export.json").write_text(json.dumps(manifest))
    return directory


@pytest.mark.libero
def test_rendering_no_camera_changes_no_state_or_action(pytester: pytest.Pytester) -> None:
    _demo_with_cameras(pytester.path / "with_cameras")
    common = ["--vla-tasks", "libero_object:1", "--vla-num-episodes", "1", "--vla-max-steps", "40",
              "--vla-save-trajectories", "-p", "no:xdist"]  # fmt: skip
    physics_only = pytester.runpytest_subprocess("--vla-export", "demo", "--vla-output", "none", *common)
    assert "cameras rendered: none" in physics_only.stdout.str()
    rendered = pytester.runpytest_subprocess("--vla-export", "with_cameras", "--vla-output", "both", *common)
    assert "cameras rendered: agentview, wrist" in rendered.stdout.str()
    name = "trajectories/libero_object_task1_episode_0.npz"
    a, b = np.load(pytester.path / "none" / name), np.load(pytester.path / "both" / name)
    assert a["actions"].shape == (40, 7)
    np.testing.assert_array_equal(a["actions"], b["actions"])
    np.testing.assert_array_equal(a["states"], b["states"])
    # The window covers motion, not a robot at rest: the comparison is not vacuous.
    assert np.ptp(a["states"][:, :3], axis=0).max() > 0.05


@pytest.mark.libero
def test_the_demo_script_shows_its_expected_failure_and_exits_0_on_its_gate(tmp_path: Path) -> None:
    """The README's first command, as a new user runs it: red only where the run as a whole fell short."""
    script = Path(__file__).parents[1] / "scripts" / "demo.sh"
    env = {key: value for key, value in os.environ.items() if key != "PYTEST_ADDOPTS"}
    done = subprocess.run(
        ["bash", str(script), "--vla-output", str(tmp_path / "out"), "--junitxml", str(tmp_path / "junit.xml")],
        env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "1 failed, 29 passed" in done.stdout  # cream cheese episode 2 (docs/demo.md), still shown
    assert "gate: success rate 96.7% vs --vla-min-success-rate 90.0%: held" in done.stdout
    rows = json.loads((tmp_path / "out" / "report.json").read_text())["episodes"]
    assert {row["progress"] for row in rows if row["success"]} == {1.0}
    (failed,) = [row for row in rows if not row["success"]]
    assert failed["progress"] == 0.0 and failed["goal"]["satisfied_at_end"] == []  # the cheese never in the basket
    assert failed["stage"] in ("touched", "grasped", "lifted")  # the fingers found it and lost it (docs/demo.md)


DROPPING_POLICY = '''
import json

import numpy as np

from pytest_vla.export import resolve_export
from pytest_vla.export.manifest import load_manifest
from pytest_vla.policy.onnx import OnnxPolicy

DROP_AT = 50  # the demo has lifted the soup by then (docs/demo.md): from here the gripper opens, the arm stays


class DroppingDemo:
    """The demo export until DROP_AT steps, then an open gripper and no motion: it grasps, lifts and drops."""

    def __init__(self):
        self.demo = OnnxPolicy(load_manifest(resolve_export("demo")))
        self.cameras, self.state, self.provider = self.demo.cameras, self.demo.state, self.demo.provider
        self.taken = 0
        self.heights = {}  # the soup's height (objects_of_interest) when asked at a step count

    def identity(self):
        return {"kind": "dropping-demo", **self.demo.identity()}

    def check(self, suite, tasks):
        return self.demo.check(suite, tasks)

    def begin_episode(self, seed, task, episode_index):
        self.taken, self.heights = 0, {}
        self.demo.begin_episode(seed, task, episode_index)

    def act(self, observation):
        self.heights[self.taken] = float(observation.objects_of_interest[0][2])
        if self.taken >= DROP_AT:
            self.taken += 1
            return np.array([[0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0]])
        chunk = self.demo.act(observation)[: DROP_AT - self.taken]
        self.taken += len(chunk)
        return chunk

    def end_episode(self, success, n_steps):
        self.demo.end_episode(success, n_steps)
        if n_steps:  # not the preflight's query
            with open("heights.json", "w") as out:
                json.dump(self.heights, out)

    def close(self):
        self.demo.close()


def pytest_vla_make_policy(config, name, suite):
    return DroppingDemo() if name == "dropping-demo" else None
'''


@pytest.mark.libero
def test_a_policy_that_grasps_lifts_and_drops_keeps_the_furthest_stage_it_reached(
    pytester: pytest.Pytester, validate_report
) -> None:
    pytester.makeconftest(DROPPING_POLICY)
    result = pytester.runpytest_subprocess(
        "--vla-policy", "dropping-demo", "--vla-tasks", "libero_object:0", "--vla-num-episodes", "1",
        "--vla-max-steps", "90", "-p", "no:xdist",
    )  # fmt: skip
    assert result.ret == pytest.ExitCode.TESTS_FAILED, result.stdout.str()[-3000:]
    (row,) = validate_report(pytester.path / "eval_output" / "report.json")["episodes"]
    # The soup was lifted and let go: it ends where no goal condition holds, and the row still says how
    # far it got (the stage is the furthest of the episode, not the last observation's).
    assert (row["success"], row["n_steps"], row["progress"], row["stage"]) == (False, 90, 0.0, "lifted")
    assert row["goal"]["furthest_stages"] == {"alphabet_soup_1": "lifted"}
    assert row["goal"]["satisfied_at_end"] == [] and row["goal"]["most_satisfied"] == []
    heights = {int(step): z for step, z in json.loads((pytester.path / "heights.json").read_text()).items()}
    rest, held, last = heights[0], heights[50], heights[max(heights)]
    assert held > rest + 0.02 and last < held - 0.02  # it was lifted, then it fell
    result.stdout.fnmatch_lines(["failed episodes by the furthest stage reached: lifted 1"])
