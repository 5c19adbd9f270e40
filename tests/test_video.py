"""--vla-video on real LIBERO episodes: what the file holds, and that recording changes nothing."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest

from tests.models import camera_export

pytestmark = pytest.mark.libero

RUN = ["--vla-tasks", "libero_object:2", "--vla-num-episodes", "1", "--vla-max-steps", "8", "-p", "no:xdist"]
# Saves the first rendered observation the policy is given (the preflight's check feeds it a flat
# grey one first): the image the video's first frame must show.
SAVE_FIRST_OBSERVATION = """
from pathlib import Path

import numpy as np
import pytest_vla.policy.onnx as onnx

_act = onnx.OnnxPolicy.act

def act(self, observation):
    image, saved = observation.images["agentview"], Path("first_agentview.npy")
    if image.std() > 0 and not saved.exists():
        np.save(saved, image)
    return _act(self, observation)

onnx.OnnxPolicy.act = act
"""


def _rows(output: Path) -> list[dict]:
    return json.loads((output / "report.json").read_text())["episodes"]


def test_a_video_shows_what_the_policy_saw_frame_by_frame(pytester: pytest.Pytester) -> None:
    camera_export(pytester.path / "export")
    pytester.makeconftest(SAVE_FIRST_OBSERVATION)
    result = pytester.runpytest_subprocess("--vla-export", "export", *RUN, "--vla-video", "all")
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # 8 steps: a timeout
    (row,) = _rows(pytester.path / "eval_output")
    path = Path(row["video_path"])
    assert path == pytester.path / "eval_output" / "videos" / "libero_object_task2_episode_0.mp4"
    reader = imageio.get_reader(path)
    assert reader.count_frames() == row["n_steps"] + 1 == 9  # the reset's frame, then one per step
    assert reader.get_meta_data()["size"] == (256, 256)
    first, seen = reader.get_data(0).astype(float), np.load(pytester.path / "first_agentview.npy").astype(float)
    assert first.shape == seen.shape == (256, 256, 3)
    assert np.abs(first - seen).mean() < 4  # H.264's loss, no flip, no other camera
    assert np.abs(first - seen[::-1, ::-1]).mean() > 10  # a flipped video would be told apart
    assert path.stat().st_size < 10 * 2**20


def test_recording_a_state_only_export_leaves_its_trajectory_bit_identical(pytester: pytest.Pytester) -> None:
    for video in ("failures", None):
        output = f"out_{video}"
        pytester.runpytest_subprocess("--vla-export", "demo", *RUN, "--vla-save-trajectories", "--vla-output", output,
                                      *(["--vla-video", video] if video else []))  # fmt: skip
    (filmed,), (plain,) = _rows(pytester.path / "out_failures"), _rows(pytester.path / "out_None")
    assert plain["video_path"] is None and filmed["video_path"] is not None  # it failed at 8 steps: kept
    with np.load(filmed["trajectory_path"]) as a, np.load(plain["trajectory_path"]) as b:
        assert np.array_equal(a["states"], b["states"]) and np.array_equal(a["actions"], b["actions"])
    assert imageio.get_reader(filmed["video_path"]).count_frames() == filmed["n_steps"] + 1
