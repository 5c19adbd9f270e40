from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from onnx import helper, numpy_helper
from onnx.external_data_helper import set_external_data
from PIL import Image

from pytest_vla.errors import ExportError, PolicyError
from pytest_vla.export.files import export_files, external_data
from pytest_vla.export.manifest import ImageInput, load_manifest
from pytest_vla.plan import EvalPlan
from pytest_vla.policy.choice import PolicyChoice
from pytest_vla.policy.feeds import binding_shapes, preprocess_image
from pytest_vla.policy.onnx import OnnxPolicy, action_chunk
from pytest_vla.report.schema import TaskSpec
from pytest_vla.rollout.runner import EpisodeRunner
from pytest_vla.suites.aloha import AlohaSuite
from pytest_vla.suites.base import Observation, StateConvention
from pytest_vla.suites.libero import LiberoSuite
from pytest_vla.suites.metaworld import MetaworldSuite
from tests.models import (
    camera_export,
    linear_policy,
    relocate_external_data,
    save_with_external_data,
    state_only_export,
    write_export,
)

RNG = np.random.default_rng(1)
FRAME = RNG.integers(0, 256, (256, 256, 3), dtype=np.uint8)


TASK = TaskSpec("libero_object", 0, "pick up the alphabet soup and place it in the basket", 280)


def test_image_is_resized_bilinear_only_when_the_size_differs() -> None:
    same = preprocess_image(FRAME, ImageInput("i", "agentview", (256, 256), "NHWC", "uint8", (0, 1)))
    assert np.array_equal(same[0], FRAME)
    small = preprocess_image(FRAME, ImageInput("i", "agentview", (32, 48), "NHWC", "uint8", (0, 1)))
    expected = np.asarray(Image.fromarray(FRAME).resize((48, 32), resample=Image.Resampling.BILINEAR))
    assert small.shape == (1, 32, 48, 3)
    assert np.array_equal(small[0], expected)


@pytest.mark.parametrize(("low", "high"), [(0, 1), (-1, 1)])
def test_float_images_are_scaled_to_the_range_and_laid_out(low: float, high: float) -> None:
    pixels = preprocess_image(FRAME, ImageInput("i", "agentview", (256, 256), "NCHW", "float32", (low, high)))
    assert pixels.dtype == np.float32 and pixels.shape == (1, 3, 256, 256)
    expected = FRAME.transpose(2, 0, 1).astype(np.float32) / 255.0 * (high - low) + low
    np.testing.assert_allclose(pixels[0], expected, atol=1e-6)
    assert pixels.min() >= low and pixels.max() <= high


def test_policy_feeds_every_input_and_runs_the_chunk(tmp_path: Path) -> None:
    export = camera_export(tmp_path / "e", size=16, chunk=6)
    policy = OnnxPolicy(load_manifest(export))
    policy.begin_episode(7, TASK, 0)
    state = RNG.normal(size=8)
    observation = Observation(images={"agentview": FRAME}, state=state)
    feed = policy.inputs(observation)
    assert set(feed) == {"image", "state"}
    assert feed["image"].shape == (1, 3, 16, 16) and feed["state"].dtype == np.float32
    session = ort.InferenceSession(str(export / "model.onnx"), providers=["CPUExecutionProvider"])
    (reference,) = session.run(["actions"], feed)
    actions = policy.act(observation)
    assert actions.shape == (6, 7)
    np.testing.assert_array_equal(actions, reference[0].astype(np.float64))


def test_execute_and_dim_slice_the_chunk(tmp_path: Path) -> None:
    export = write_export(
        tmp_path / "e",
        linear_policy(chunk=8, width=9),
        {"state": {"source": "state"}},
        {"output": "actions", "dim": 7, "execute": 3},
    )
    policy = OnnxPolicy(load_manifest(export))
    raw = np.arange(72, dtype=np.float32).reshape(1, 8, 9)
    np.testing.assert_array_equal(action_chunk(raw, policy.manifest.action), raw[0, :3, :7])
    single = OnnxPolicy(load_manifest(state_only_export(tmp_path / "single", chunk=None, width=9)))
    np.testing.assert_array_equal(action_chunk(raw[:, 0], single.manifest.action), raw[:, 0, :7])


@pytest.mark.parametrize(
    ("output", "message"),
    [
        (np.zeros((2, 9), np.float32), "expected \\[1, D\\] or \\[1, T, D\\]"),
        (np.zeros((1, 4, 5), np.float32), "5 values per action"),
        (np.full((1, 4, 9), np.nan, np.float32), "non-finite"),
    ],
)
def test_unusable_outputs_are_policy_errors(tmp_path: Path, output: np.ndarray, message: str) -> None:
    policy = OnnxPolicy(load_manifest(state_only_export(tmp_path / "e", width=9)))
    with pytest.raises(PolicyError, match=message):
        action_chunk(output, policy.manifest.action)


def test_execute_longer_than_the_chunk_is_an_error(tmp_path: Path) -> None:
    export = write_export(
        tmp_path / "e",
        linear_policy(chunk=2),
        {"state": {"source": "state"}},
        {"output": "actions", "dim": 7, "execute": 5},
    )
    policy = OnnxPolicy(load_manifest(export))
    policy.begin_episode(7, TASK, 0)
    with pytest.raises(PolicyError, match="execute is 5 but the model returns 2"):
        policy.act(Observation(images={}, state=np.zeros(8)))


@pytest.mark.parametrize(
    ("model", "inputs", "action", "message"),
    [
        (
            linear_policy(),
            {"state": {"source": "state"}, "extra": {"source": "state"}},
            None,
            "inputs.extra is not an input",
        ),
        (linear_policy(image_shape=(1, 3, 8, 8)), {"state": {"source": "state"}}, None, r"\['image'\] are not bound"),
        (
            linear_policy(image_shape=(1, 3, 8, 8)),
            {
                "state": {"source": "state"},
                "image": {"source": "image", "camera": "agentview", "size": [8, 8], "dtype": "uint8"},
            },
            None,
            "model expects tensor\\(float\\), manifest gives tensor\\(uint8\\)",
        ),
        (linear_policy(), {"state": {"source": "state"}}, {"output": "logits", "dim": 7}, "action.output 'logits'"),
    ],
)
def test_binding_mismatches_are_named(tmp_path: Path, model, inputs, action, message: str) -> None:
    export = write_export(tmp_path / "e", model, inputs, action)
    with pytest.raises(ExportError, match=message):
        OnnxPolicy(load_manifest(export))


def test_a_corrupt_model_is_an_export_error(tmp_path: Path) -> None:
    export = state_only_export(tmp_path / "e")
    (export / "model.onnx").write_bytes(b"\x00garbage")
    with pytest.raises(ExportError, match=r"model\.onnx: onnx cannot parse it"):
        OnnxPolicy(load_manifest(export))


def test_an_image_size_the_model_cannot_take_is_named(tmp_path: Path) -> None:
    export = write_export(
        tmp_path / "e",
        linear_policy(image_shape=(1, 3, 8, 8)),
        {"state": {"source": "state"}, "image": {"source": "image", "camera": "agentview", "size": [16, 16]}},
    )
    manifest = load_manifest(export)
    suite = LiberoSuite()
    (task,) = suite.resolve_tasks(["libero_object:0"])
    with pytest.raises(
        ExportError,
        match=r"inputs\.image: model shape \[1, 3, 8, 8\] does not accept \[1, 3, 16, 16\] \(task libero_object:0\)",
    ):
        OnnxPolicy(manifest).check_shapes(binding_shapes(manifest, suite, task), task)


@pytest.mark.parametrize(
    ("suite", "camera", "theirs"),
    [(LiberoSuite(), "corner2", "agentview, wrist"), (MetaworldSuite(), "agentview", "corner2")],
)
def test_a_camera_the_suite_lacks_is_refused_naming_the_suites(tmp_path: Path, suite, camera: str, theirs: str) -> None:
    export = write_export(
        tmp_path / "e",
        linear_policy(image_shape=(1, 3, 8, 8), width=suite.action_dim),
        {"state": {"source": "state"}, "image": {"source": "image", "camera": camera, "size": [8, 8]}},
        {"output": "actions", "dim": suite.action_dim},
    )
    with pytest.raises(
        ExportError, match=rf"inputs\.image\.camera is '{camera}'; the {suite.name} suite's cameras are {theirs}$"
    ):
        OnnxPolicy(load_manifest(export)).check(suite, [TASK])


@pytest.mark.parametrize("mode", ["binarize", "invert", "binarize_invert"])
def test_gripper_modes_are_refused_where_the_last_action_value_is_no_gripper_command(tmp_path: Path, mode: str) -> None:
    suite = AlohaSuite()
    export = write_export(
        tmp_path / "e",
        linear_policy(width=14),
        {"state": {"source": "state"}},
        {"output": "actions", "dim": 14, "gripper": mode},
    )
    refusal = f"action.gripper is '{mode}', but the aloha suite's last action value is no gripper command in [-1, 1]"
    with pytest.raises(ExportError, match=re.escape(refusal)):
        OnnxPolicy(load_manifest(export)).check(suite, suite.resolve_tasks(["aloha:0"]))


def test_a_state_convention_the_suite_does_not_offer_is_refused(tmp_path: Path) -> None:
    suite = MetaworldSuite()
    export = write_export(
        tmp_path / "e",
        linear_policy(width=4),
        {"state": {"source": "state", "quaternion": "antipodal", "pad_to": 8}},
        {"output": "actions", "dim": 4},
    )
    with pytest.raises(
        ExportError,
        match=r"inputs\.state: the metaworld suite's state has no option 'quaternion' \(its options: none\)$",
    ):
        OnnxPolicy(load_manifest(export)).check(suite, suite.resolve_tasks(["push-v3"]))
    # A choice LIBERO does not offer, and a misspelt option.
    for spec, refusal in [
        (
            {"quaternion": "hamilton"},
            "quaternion is 'hamilton'; the libero suite's choices for it are robosuite, antipodal",
        ),
        (
            {"quaternon": "antipodal"},
            "the libero suite's state has no option 'quaternon' (its options: from, quaternion)",
        ),
    ]:
        wrong = write_export(tmp_path / next(iter(spec)), linear_policy(), {"state": {"source": "state", **spec}})
        with pytest.raises(ExportError, match=re.escape(f"inputs.state: {refusal}") + "$"):
            OnnxPolicy(load_manifest(wrong)).check(LiberoSuite(), [TASK])
    # LIBERO offers it.
    libero = write_export(tmp_path / "l", linear_policy(), {"state": {"source": "state", "quaternion": "antipodal"}})
    OnnxPolicy(load_manifest(libero)).check(LiberoSuite(), [TASK])


def test_a_model_hub_cache_export_is_followed_and_its_real_paths_recorded(tmp_path: Path) -> None:
    """A hub's cache keeps snapshots/<revision>/<file> as links to ../../blobs/<digest>, outside the snapshot."""
    build = state_only_export(tmp_path / "build")
    save_with_external_data(linear_policy(), build / "model.onnx")
    blobs, snapshot = tmp_path / "hub" / "blobs", tmp_path / "hub" / "snapshots" / "abc123"
    blobs.mkdir(parents=True)
    snapshot.mkdir(parents=True)
    for index, name in enumerate(("model.onnx", "vla_export.json", "weights.bin")):
        (build / name).rename(blobs / f"blob{index}")
        (snapshot / name).symlink_to(f"../../blobs/blob{index}")
    policy = OnnxPolicy(load_manifest(snapshot))
    assert policy.external_data == (snapshot / "weights.bin",)
    policy.begin_episode(7, TASK, 0)
    assert policy.act(Observation(images={}, state=np.ones(8))).shape == (4, 7)
    files = export_files(snapshot)
    assert [(entry["name"], entry["path"]) for entry in files] == [
        ("model.onnx", str(blobs.resolve() / "blob0")),
        ("vla_export.json", str(blobs.resolve() / "blob1")),
        ("weights.bin", str(blobs.resolve() / "blob2")),
    ]


@pytest.mark.parametrize("location", ["{outside}", "../secret.bin", "sub/../../secret.bin", ""])
def test_external_data_outside_the_export_is_refused_before_onnxruntime_opens_it(tmp_path: Path, location: str) -> None:
    export = state_only_export(tmp_path / "e")
    save_with_external_data(linear_policy(), export / "model.onnx")
    (export / "weights.bin").rename(tmp_path / "secret.bin")  # a file onnxruntime could read
    location = location.replace("{outside}", str(tmp_path / "secret.bin"))
    relocate_external_data(export / "model.onnx", location)
    message = rf"model\.onnx: tensor 'ws' external_data location: '{re.escape(location)}' must be a path inside"
    with pytest.raises(ExportError, match=message):
        OnnxPolicy(load_manifest(export))
    with pytest.raises(ExportError, match=message):
        export_files(export)


def test_external_data_of_a_node_attribute_is_checked_too(tmp_path: Path) -> None:
    model = linear_policy()
    constant = numpy_helper.from_array(np.zeros(4, np.float32), "unused")
    set_external_data(constant, "/etc/hostname")
    constant.ClearField("raw_data")
    model.graph.node.append(helper.make_node("Constant", [], ["unused"], value=constant))
    export = write_export(tmp_path / "e", model, {"state": {"source": "state"}})
    with pytest.raises(ExportError, match="tensor 'unused' external_data location: '/etc/hostname' must be a path"):
        external_data(export / "model.onnx")


def _plan(export: Path, output: Path) -> EvalPlan:
    return EvalPlan(
        suite="libero",
        policy=PolicyChoice(export=export),
        output=output,
        tasks=(TASK,),
        num_episodes=1,
        seed=0,
        max_steps_override=None,
        save_trajectories=False,
        episode_timeout_override=None,
        cameras=(),
        state=StateConvention(),
        provider="CPUExecutionProvider",
        collect_paths=False,
        policy_identity=OnnxPolicy(load_manifest(export)).identity(),
    )


def _load(export: Path) -> OnnxPolicy:
    return OnnxPolicy(load_manifest(export))


def test_a_worker_refuses_a_model_replaced_since_the_run_started(tmp_path: Path) -> None:
    export = state_only_export(tmp_path / "e")
    plan = EvalPlan.from_json(_plan(export, tmp_path / "out").to_json())  # as an xdist worker gets it
    runner = EpisodeRunner(plan, LiberoSuite(), worker="gw0", announce=print, make_policy=lambda: _load(export))
    assert runner._load_policy() is runner._load_policy()  # the export as hashed loads, once
    state_only_export(export, seed=1)  # a trainer overwrites the export in place, hours later
    late = EpisodeRunner(plan, LiberoSuite(), worker="gw1", announce=print, make_policy=lambda: _load(export))
    row = late.run(TASK, TASK.episode(0))
    assert row["terminal_reason"] == "adapter_error"
    assert row["error_message"].startswith(f"{(export / 'model.onnx').resolve()}: the export changed during the run")
    assert "\n" not in row["error_message"]
