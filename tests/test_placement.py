"""Where processes run: GPU pins (--vla-gpus), the rendering backend (--vla-render), thread budgets, -n auto.

No GPU here: an explicit GPU list is pinned and recorded all the same, with inference on CPU, which
is what makes the pinning testable on this machine.
"""

from __future__ import annotations

import ctypes.util
import json
import os
from pathlib import Path

import pytest

from pytest_vla.controller import placement
from tests.conftest import FAKE_SUITE
from tests.models import camera_export

# Each process writes where it was placed: worker id -> the variables the controller set for it.
RECORD_PLACEMENT = """

import json, os
import ctypes.util
import json
import os
from pathlib import Path

def pytest_configure(config):
    worker = getattr(config, "workerinput", {}).get("workerid", "main")
    names = ("CUDA_VISIBLE_DEVICES", "MUJOCO_GL", "PYOPENGL_PLATFORM", "MUJOCO_EGL_DEVICE_ID", "OMP_NUM_THREADS",
             "LP_NUM_THREADS")
    Path(f"{worker}.placement").write_text(json.dumps({name: os.environ.get(name) for name in names}))
"""


def _placements(pytester: pytest.Pytester) -> dict[str, dict[str, str | None]]:
    """Of the xdist workers, or of the single process (the controller writes before it decides)."""
    found = {path.stem: json.loads(path.read_text()) for path in pytester.path.glob("*.placement")}
    workers = {name: variables for name, variables in found.items() if name.startswith("gw")}
    return workers or found


@pytest.fixture
def placed(fake, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch):
    pytester.makeconftest(FAKE_SUITE + RECORD_PLACEMENT)
    for name in ("CUDA_VISIBLE_DEVICES", "MUJOCO_GL", "PYOPENGL_PLATFORM", "MUJOCO_EGL_DEVICE_ID", "OMP_NUM_THREADS",
                 "LP_NUM_THREADS"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    return fake


def test_an_explicit_gpu_list_pins_workers_round_robin_even_without_cuda(placed, pytester, validate_report) -> None:
    result = placed({}, "--vla-tasks", "fake:0,fake:1,fake:2", "--vla-num-episodes", "2", "-n", "2",
                    "--vla-gpus", "4,GPU-77", "--vla-render", "egl")  # fmt: skip
    result.stdout.fnmatch_lines(["vla: workers pinned to GPUs (gw0: 4, gw1: GPU-77)"])
    warnings = [line for line in result.stdout.lines if "--vla-gpus 4,GPU-77: inference runs on" in line]
    assert len(warnings) == 1 and "CPUExecutionProvider" in warnings[0]
    placements = _placements(pytester)
    assert placements["gw0"]["CUDA_VISIBLE_DEVICES"] == "4" and placements["gw1"]["CUDA_VISIBLE_DEVICES"] == "GPU-77"
    assert placements["gw0"]["MUJOCO_EGL_DEVICE_ID"] == "4"  # EGL's device chosen for the worker, not left to chance
    assert placements["gw1"]["MUJOCO_EGL_DEVICE_ID"] is None  # a UUID nvidia-smi cannot resolve is no EGL index
    assert (
        {p["MUJOCO_GL"] for p in placements.values()}
        == {"egl"}
        == {p["PYOPENGL_PLATFORM"] for p in placements.values()}
    )
    rows = validate_report(pytester.path / "eval_output" / "report.json")["episodes"]
    pins = {row["worker"]: row["cuda_visible_devices"] for row in rows}
    assert pins == {"gw0": "4", "gw1": "GPU-77"}


def test_one_process_is_pinned_to_the_first_gpu(placed, pytester, validate_report) -> None:
    placed({}, "--vla-tasks", "fake:0", "--vla-num-episodes", "1", "-p", "no:xdist", "--vla-gpus", "2,3")
    rows = validate_report(pytester.path / "eval_output" / "report.json")["episodes"]
    assert [row["cuda_visible_devices"] for row in rows] == ["2"]


def test_workers_share_the_cores_instead_of_each_taking_all(placed, pytester) -> None:
    assert len(os.sched_getaffinity(0)) == 2  # this machine: two workers get one thread each
    placed({}, "--vla-tasks", "fake:0", "--vla-num-episodes", "2", "-n", "2")
    placements = _placements(pytester)
    assert {(p["OMP_NUM_THREADS"], p["LP_NUM_THREADS"]) for p in placements.values()} == {("1", "1")}
    assert {p["CUDA_VISIBLE_DEVICES"] for p in placements.values()} == {None}  # no GPU, no pin


def test_n_auto_counts_memory_as_well_as_cores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    export = tmp_path / "export"
    export.mkdir()
    (export / "model.onnx").write_bytes(b"\0" * 2**20)
    monkeypatch.setattr(placement, "available_cpus", lambda: 16)
    monkeypatch.setattr(placement, "_available_memory", lambda: 6 * 2**30)
    workers, reason = placement.auto_worker_count(export)
    assert workers == 2  # 16 cores, but memory for two envs and models
    assert reason == "2 workers (16 cores, 6.0 GiB available at 2.5 GiB per worker)"
    monkeypatch.setattr(placement, "_available_memory", lambda: 64 * 2**30)
    assert placement.auto_worker_count(export)[0] == 16


def test_n_auto_says_how_it_was_sized(fake) -> None:
    result = fake({}, "--vla-tasks", "fake:0", "--vla-num-episodes", "1", "-n", "auto")
    result.stdout.re_match_lines(
        [r"vla: -n auto: \d+ workers \(\d+ cores, [\d.]+ GiB available at 2\.5 GiB per worker\)"]
    )


@pytest.mark.parametrize(("option", "message"), [
    (["--vla-render", "glfw"], "--vla-render must be one of osmesa, egl, got 'glfw'"),
    (["--vla-gpus", ","], "--vla-gpus must name at least one GPU (an index or a UUID), got ','"),
])  # fmt: skip
def test_bad_placement_options_are_one_line(fake, option: list[str], message: str) -> None:
    result = fake({}, *option)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {message}"])


def test_two_onnxruntime_builds_are_named_before_anything_runs(fake, pytester, monkeypatch) -> None:
    site = pytester.path / "site"
    info = site / "onnxruntime_gpu-1.20.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: onnxruntime-gpu\nVersion: 1.20.0\n")
    (info / "top_level.txt").write_text("onnxruntime\n")
    monkeypatch.setenv("PYTHONPATH", str(site))
    result = fake({}, "--vla-tasks", "fake:0")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        "ERROR: onnxruntime and onnxruntime-gpu are both installed and share the import name onnxruntime: keep one, "
        "e.g. pip uninstall -y onnxruntime && pip install --force-reinstall --no-deps onnxruntime-gpu"
    ])  # fmt: skip


@pytest.mark.libero
def test_egl_renders_real_episodes_or_is_named_before_they_run(pytester: pytest.Pytester, validate_report) -> None:
    camera_export(pytester.path / "export")
    run = ["--vla-tasks", "libero_object:0", "--vla-num-episodes", "1", "--vla-max-steps", "3", "-p", "no:xdist"]
    result = pytester.runpytest_subprocess("--vla-export", "export", "--vla-render", "egl", *run)
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    if ctypes.util.find_library("EGL") is None:  # no libEGL (Debian's libegl1): one line before any episode
        assert result.ret == pytest.ExitCode.USAGE_ERROR
        result.stderr.fnmatch_lines(["ERROR: preflight failed ?egl-device?: *"])
        return
    result.stdout.fnmatch_lines(["*MUJOCO_GL=egl*"])
    report = validate_report(pytester.path / "eval_output" / "report.json")
    assert report["protocol"]["render_backend"] == "egl"
    assert [row["terminal_reason"] for row in report["episodes"]] == ["timeout"]  # it ran its 3 steps
