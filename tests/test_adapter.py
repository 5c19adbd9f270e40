"""The export adapter: each binding's numbers against an independent computation, and every check."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from onnx import TensorProto
from PIL import Image
from safetensors.numpy import save_file

from pytest_vla.errors import ExportError, StatsError
from pytest_vla.export.manifest import ImageInput, load_manifest
from pytest_vla.export.normalize import load_normalization
from pytest_vla.policy.feeds import binding_shapes, noise_tensor, preprocess_image, state_vector
from pytest_vla.policy.onnx import OnnxPolicy, action_chunk
from pytest_vla.report.schema import TaskSpec
from pytest_vla.suites.base import Observation
from pytest_vla.suites.libero import LiberoSuite
from pytest_vla.suites.libero.env import axis_angle
from tests.models import signature_policy, word_tokenizer, write_export

RNG = np.random.default_rng(3)
FRAME = RNG.integers(0, 256, (256, 256, 3), dtype=np.uint8)
STATE_STATS = {
    "mean": RNG.normal(size=8).tolist(),
    "std": RNG.uniform(0.1, 2, size=8).tolist(),
    "min": (-RNG.uniform(1, 2, size=8)).tolist(),
    "max": RNG.uniform(1, 2, size=8).tolist(),
    "q01": (-RNG.uniform(0.5, 1, size=8)).tolist(),
    "q99": RNG.uniform(0.5, 1, size=8).tolist(),
}
ACTION_STATS = {name: (np.asarray(values[:7]) * 0.5).tolist() for name, values in STATE_STATS.items()}
ACTION_STATS["std"] = np.abs(ACTION_STATS["std"]).tolist()
TASK = TaskSpec("libero_object", 0, "pick up the alphabet soup and place it in the basket", 280)
WORDS = ["pick", "up", "the", "alphabet", "soup", "and", "place", "it", "in", "basket"]


def _stats_json(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "stats.json"
    path.write_text(json.dumps({"observation.state": STATE_STATS, "action": ACTION_STATS}))
    return path


# --- statistics and the normalization formulas -------------------------------------------------


def test_json_and_lerobot_safetensors_stats_read_the_same(tmp_path: Path) -> None:
    _stats_json(tmp_path)
    flat = {f"observation.state.{stat}": np.asarray(v, np.float32) for stat, v in STATE_STATS.items()}
    save_file(flat, str(tmp_path / "policy_preprocessor_step_5_normalizer_processor.safetensors"))
    for mode in ("mean_std", "min_max", "q01_q99"):
        a = load_normalization(tmp_path / "stats.json", "observation.state", mode)
        b = load_normalization(
            tmp_path / "policy_preprocessor_step_5_normalizer_processor.safetensors", "observation.state", mode
        )
        np.testing.assert_array_equal(a.low, b.low)
        np.testing.assert_array_equal(a.high, b.high)


def _independent_normalize(x: np.ndarray, mode: str, stats: dict[str, Any]) -> np.ndarray:
    """LeRobot's formulas, written out in float32 (eps 1e-8)."""
    f = {key: np.asarray(value, np.float32) for key, value in stats.items()}
    x = x.astype(np.float32)
    eps = np.float32(1e-8)
    if mode == "mean_std":
        return (x - f["mean"]) / (f["std"] + eps)
    low, high = (f["min"], f["max"]) if mode == "min_max" else (f["q01"], f["q99"])
    return 2 * (x - low) / np.where(high - low == 0, eps, high - low) - 1


def _independent_unnormalize(x: np.ndarray, mode: str, stats: dict[str, Any]) -> np.ndarray:
    """The issue's formulas: x*std+mean; (x+1)/2*(max-min)+min; (x+1)/2*(q99-q01)+q01."""
    f = {key: np.asarray(value, np.float64)[: x.shape[-1]] for key, value in stats.items()}
    if mode == "mean_std":
        return x * f["std"] + f["mean"]
    low, high = (f["min"], f["max"]) if mode == "min_max" else (f["q01"], f["q99"])
    return (x + 1) / 2 * (high - low) + low


@pytest.mark.parametrize("mode", ["mean_std", "min_max", "q01_q99"])
def test_state_normalize_and_pad(tmp_path: Path, mode: str) -> None:
    export = write_export(
        tmp_path / "e",
        signature_policy({"state": (TensorProto.FLOAT, [1, 32])}, output_shape=(1, 7)),
        {"state": {"source": "state", "pad_to": 32, "normalize": {"mode": mode, "stats": "stats.json"}}},
        {"output": "actions", "dim": 7},
    )
    _stats_json(export)
    (binding,) = load_manifest(export).inputs
    state = RNG.normal(size=8)
    fed = state_vector(state, binding)
    assert fed.shape == (1, 32) and fed.dtype == np.float32
    np.testing.assert_array_equal(fed[0, :8], _independent_normalize(state, mode, STATE_STATS))
    assert not fed[0, 8:].any()


@pytest.mark.parametrize("mode", ["mean_std", "min_max", "q01_q99"])
@pytest.mark.parametrize("gripper", ["raw", "binarize", "invert", "binarize_invert"])
def test_action_unnormalize_slice_gripper_and_execute(tmp_path: Path, mode: str, gripper: str) -> None:
    export = write_export(
        tmp_path / "e",
        signature_policy({"state": (TensorProto.FLOAT, [1, 8])}),
        {"state": {"source": "state"}},
        {
            "output": "actions",
            "dim": 7,
            "execute": 5,
            "unnormalize": {"mode": mode, "stats": "stats.json"},
            "gripper": gripper,
        },
    )
    _stats_json(export)
    output = RNG.uniform(-1, 1, size=(1, 50, 32)).astype(np.float32)
    actions = action_chunk(output, load_manifest(export).action)
    expected = _independent_unnormalize(output[0, :5, :7].astype(np.float64), mode, ACTION_STATS)
    if gripper in ("binarize", "binarize_invert"):
        expected[:, -1] = np.where(expected[:, -1] < 0, -1.0, 1.0)
    if gripper in ("invert", "binarize_invert"):
        expected[:, -1] = -expected[:, -1]
    assert actions.shape == (5, 7)
    np.testing.assert_allclose(actions, expected, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(
    ("content", "key", "mode", "message"),
    [
        ({"action": ACTION_STATS}, "observation.state", "mean_std", "no statistics for 'observation.state'"),
        ({"observation.state": {"mean": [0.0] * 8}}, "observation.state", "mean_std", "lacks std"),
        ({"observation.state": {"q01": ["a"], "q99": [1]}}, "observation.state", "q01_q99", "lists of numbers"),
        ({"observation.state": STATE_STATS}, "observation.state", "z_score", "unknown normalization mode"),
    ],
)
def test_unusable_stats_are_named(tmp_path: Path, content: dict[str, Any], key: str, mode: str, message: str) -> None:
    (tmp_path / "s.json").write_text(json.dumps(content))
    with pytest.raises(StatsError, match=message):
        load_normalization(tmp_path / "s.json", key, mode)


# --- images -------------------------------------------------------------------------------------


def _openpi_resize_with_pad(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """openpi's image_tools._resize_with_pad_pil, written out."""
    pil = Image.fromarray(image)
    ratio = max(pil.size[0] / width, pil.size[1] / height)
    resized = pil.resize((int(pil.size[0] / ratio), int(pil.size[1] / ratio)), resample=Image.BILINEAR)
    canvas = Image.new(resized.mode, (width, height), 0)
    canvas.paste(resized, (max(0, int((width - resized.size[0]) / 2)), max(0, int((height - resized.size[1]) / 2))))
    return np.asarray(canvas)


def test_pad_resize_matches_openpi_and_scales_to_minus_one_one() -> None:
    binding = ImageInput("i", "agentview", (96, 160), "NHWC", "float32", (-1.0, 1.0), resize="pad")
    fed = preprocess_image(FRAME, binding)[0]
    expected = _openpi_resize_with_pad(FRAME, 96, 160).astype(np.float32) / np.float32(255) * 2 - 1
    np.testing.assert_array_equal(fed, expected)
    assert (fed[:, :32] == -1).all() and (fed[:, -32:] == -1).all()  # the padding is black
    stretched = preprocess_image(FRAME, ImageInput("i", "agentview", (96, 160), "NHWC", "float32", (-1.0, 1.0)))
    assert not np.array_equal(stretched[0], fed)
    # For a square target both are the same bilinear scaling.
    square = [
        preprocess_image(FRAME, ImageInput("i", "agentview", (64, 64), "NCHW", "uint8", (0, 1), r))
        for r in ("pad", "stretch")
    ]
    np.testing.assert_array_equal(*square)


# --- instruction tokens, constants, noise -------------------------------------------------------


def _token_export(tmp_path: Path, max_length: int, tokenizer_pad: int | None = None, **extra: Any) -> Path:
    export = write_export(
        tmp_path / "e",
        signature_policy(
            {"tokens": (TensorProto.INT64, [1, max_length]), "mask": (TensorProto.BOOL, [1, max_length])},
            output_shape=(1, 7),
        ),
        {
            "tokens": {
                "source": "instruction_tokens",
                "tokenizer": "tokenizer.json",
                "max_length": max_length,
                **extra,
            },
            "mask": {"source": "instruction_mask", "tokenizer": "tokenizer.json", "max_length": max_length, **extra},
        },
        {"output": "actions", "dim": 7},
    )
    word_tokenizer(export / "tokenizer.json", WORDS, pad_id=tokenizer_pad)
    return export


def test_instruction_tokens_and_mask_are_padded(tmp_path: Path) -> None:
    policy = OnnxPolicy(load_manifest(_token_export(tmp_path, 16, tokenizer_pad=5)))
    policy.begin_episode(7, TASK, 0)
    feed = policy.inputs(Observation(images={}, state=np.zeros(8)))
    vocab = {word: index + 2 for index, word in enumerate(WORDS)}
    ids = [vocab[word] for word in TASK.instruction.split()]
    assert len(ids) == 11
    np.testing.assert_array_equal(feed["tokens"][0], ids + [5] * 5)  # the tokenizer's own pad id
    assert feed["tokens"].dtype == np.int64 and feed["mask"].dtype == np.bool_
    np.testing.assert_array_equal(feed["mask"][0], [True] * 11 + [False] * 5)


def test_long_instructions_are_truncated_and_named(tmp_path: Path) -> None:
    policy = OnnxPolicy(load_manifest(_token_export(tmp_path, 4, template="{instruction} basket", pad_id=9)))
    policy.begin_episode(7, TASK, 0)
    feed = policy.inputs(Observation(images={}, state=np.zeros(8)))
    np.testing.assert_array_equal(feed["tokens"][0], [2, 3, 4, 5])
    assert feed["mask"][0].all()
    (line,) = [line for line in policy.truncated_instructions([TASK], 8) if line.startswith("inputs.tokens")]
    assert "libero_object:0 has 12 tokens, truncated to 4" in line


def test_noise_is_reproducible_per_seed_task_episode_and_query(tmp_path: Path) -> None:
    export = write_export(
        tmp_path / "e",
        signature_policy({"noise": (TensorProto.FLOAT, [1, 50, 32]), "cam3": (TensorProto.FLOAT, [1, 3, 8, 8])}),
        {
            "noise": {"source": "noise", "shape": [1, 50, 32]},
            "cam3": {"source": "constant", "value": -1, "shape": [1, 3, 8, 8]},
        },
        {"output": "actions", "dim": 7},
    )
    manifest = load_manifest(export)
    noise = manifest.inputs[0]
    draws = {
        key: noise_tensor(noise, *key) for key in [(7, TASK, 0, 0), (7, TASK, 0, 1), (7, TASK, 1, 0), (8, TASK, 0, 0)]
    }
    np.testing.assert_array_equal(draws[(7, TASK, 0, 0)], noise_tensor(noise, 7, TASK, 0, 0))
    assert len({arr.tobytes() for arr in draws.values()}) == 4
    sample = draws[(7, TASK, 0, 0)]
    assert sample.dtype == np.float32 and abs(sample.mean()) < 0.1 and abs(sample.std() - 1) < 0.1
    policy = OnnxPolicy(manifest)
    policy.begin_episode(7, TASK, 0)
    observation = Observation(images={}, state=np.zeros(8))
    first, second = policy.inputs(observation), None
    policy.act(observation)  # the next query draws the next noise
    second = policy.inputs(observation)
    np.testing.assert_array_equal(first["noise"], draws[(7, TASK, 0, 0)])
    np.testing.assert_array_equal(second["noise"], draws[(7, TASK, 0, 1)])
    assert (first["cam3"] == -1).all() and first["cam3"].dtype == np.float32


# --- the state conventions ----------------------------------------------------------------------


def test_antipodal_quaternions_give_angles_up_to_pi() -> None:
    quat = np.array([0.99, 0.0, -0.03, -0.1])  # x, y, z, w with w < 0: LIBERO's gripper pointing down
    quat /= np.linalg.norm(quat)
    robosuite, antipodal = axis_angle(quat, "robosuite"), axis_angle(quat, "antipodal")
    assert np.linalg.norm(robosuite) > np.pi > np.linalg.norm(antipodal)
    np.testing.assert_allclose(axis_angle(-quat, "robosuite"), antipodal)  # the same rotation


# --- checks before any episode ------------------------------------------------------------------


def _smolvla_like(directory: Path, **changes: Any) -> Path:
    """A SmolVLA-signature export (reflex's I/O names, tiny images) with every binding kind."""
    signature = {
        "img_cam1": (TensorProto.FLOAT, [1, 3, 32, 32]),
        "img_cam2": (TensorProto.FLOAT, [1, 3, 32, 32]),
        "img_cam3": (TensorProto.FLOAT, [1, 3, 32, 32]),
        "mask_cam1": (TensorProto.BOOL, [1]),
        "mask_cam2": (TensorProto.BOOL, [1]),
        "mask_cam3": (TensorProto.BOOL, [1]),
        "lang_tokens": (TensorProto.INT64, [1, 16]),
        "lang_masks": (TensorProto.BOOL, [1, 16]),
        "state": (TensorProto.FLOAT, [1, 32]),
        "noise": (TensorProto.FLOAT, [1, 50, 32]),
    }
    image = {"source": "image", "size": [32, 32], "range": [-1, 1], "resize": "pad"}
    tokens = {"tokenizer": "tokenizer.json", "max_length": 16, "template": "{instruction}\n"}
    inputs = {
        "img_cam1": {**image, "camera": "agentview"},
        "img_cam2": {**image, "camera": "wrist"},
        "img_cam3": {"source": "constant", "value": -1.0, "shape": [1, 3, 32, 32]},
        "mask_cam1": {"source": "constant", "value": True, "dtype": "bool", "shape": [1]},
        "mask_cam2": {"source": "constant", "value": True, "dtype": "bool", "shape": [1]},
        "mask_cam3": {"source": "constant", "value": False, "dtype": "bool", "shape": [1]},
        "lang_tokens": {"source": "instruction_tokens", **tokens},
        "lang_masks": {"source": "instruction_mask", **tokens},
        "state": {"source": "state", "pad_to": 32, "normalize": {"mode": "mean_std", "stats": "stats.json"}},
        "noise": {"source": "noise", "shape": [1, 50, 32]},
    }
    action = {"output": "actions", "dim": 7, "execute": 5, "unnormalize": {"mode": "mean_std", "stats": "stats.json"}}
    for name, spec in changes.items():
        if name == "action":
            action.update(spec)
        else:
            inputs[name] = spec
    export = write_export(directory, signature_policy(signature), inputs, action)
    _stats_json(export)
    word_tokenizer(export / "tokenizer.json", WORDS)
    return export


def test_a_smolvla_like_export_binds_and_runs(tmp_path: Path) -> None:
    manifest = load_manifest(_smolvla_like(tmp_path / "e"))
    policy = OnnxPolicy(manifest)
    shapes = binding_shapes(manifest, LiberoSuite(), TASK)
    policy.check_shapes(shapes, TASK)
    assert manifest.cameras == ("agentview", "wrist")
    policy.begin_episode(7, TASK, 0)
    observation = Observation(images={"agentview": FRAME, "wrist": FRAME[::-1]}, state=RNG.normal(size=8))
    feed = policy.inputs(observation)
    assert {name: value.shape for name, value in feed.items()} == shapes
    actions = policy.act(observation)
    assert actions.shape == (5, 7) and np.isfinite(actions).all()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        (
            {"lang_tokens": {"source": "noise", "shape": [1, 16]}},
            r"inputs\.lang_tokens: model expects tensor\(int64\), manifest gives tensor\(float\)",
        ),
        (
            {"mask_cam1": {"source": "constant", "value": 1, "dtype": "int64", "shape": [1]}},
            r"inputs\.mask_cam1: model expects tensor\(bool\)",
        ),
        (
            {"noise": {"source": "noise", "shape": [1, 10, 32]}},
            r"inputs\.noise: model shape \[1, 50, 32\] does not accept \[1, 10, 32\]",
        ),
        (
            {"state": {"source": "state", "pad_to": 6}},
            r"inputs\.state\.pad_to is 6, shorter than the libero state \(8\)",
        ),
        (
            {
                "state": {
                    "source": "state",
                    "pad_to": 32,
                    "normalize": {"mode": "mean_std", "stats": "stats.json", "key": "action"},
                }
            },
            r"stats\.json has 7 values for 'action'; the libero state has 8",
        ),
        (
            {"state": {"source": "state", "normalize": {"mode": "mean_std", "stats": "missing.json"}}},
            r"inputs\.state\.normalize: statistics file 'missing\.json' not found",
        ),
        (
            {"lang_masks": {"source": "instruction_mask", "tokenizer": "vocab.txt", "max_length": 16}},
            r"inputs\.lang_masks\.tokenizer: 'vocab\.txt' not found",
        ),
        (
            {"img_cam1": {"source": "image", "camera": "agentview", "size": [32, 32], "resize": "crop"}},
            r"inputs\.img_cam1\.resize must be one of \['stretch', 'pad'\]",
        ),
        ({"action": {"gripper": "flip"}}, r"action\.gripper must be one of"),
        (
            {"action": {"dim": 7, "unnormalize": {"mode": "q01_q99", "stats": "stats.json", "key": "nope"}}},
            r"action\.unnormalize: stats\.json: no statistics for 'nope'",
        ),
        (
            {"state": {"source": "state", "pad_to": 32, "quaternion": "wxyz"}},
            r"inputs\.state: quaternion is 'wxyz'; the libero suite's choices for it are robosuite, antipodal$",
        ),
    ],
)
def test_every_binding_mismatch_is_named_in_one_line(tmp_path: Path, changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ExportError, match=message) as caught:
        export = _smolvla_like(tmp_path / "e", **changes)
        manifest = load_manifest(export)
        OnnxPolicy(manifest).check(LiberoSuite(), [TASK])
    assert "\n" not in str(caught.value)


def test_a_truncated_instruction_is_a_warning_in_the_run(pytester: pytest.Pytester) -> None:
    _token_export(pytester.path, 4)
    result = pytester.runpytest_subprocess(
        "--vla-export", "e", "--vla-tasks", "libero_object:0", "--collect-only", "-q"
    )
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(
        ["*VlaWarning: inputs.tokens: the instruction of libero_object:0 has 11 tokens, truncated to 4*"]
    )


@pytest.mark.libero
def test_a_smolvla_like_export_runs_real_episodes(pytester: pytest.Pytester, validate_report) -> None:
    _smolvla_like(pytester.path / "e")
    result = pytester.runpytest_subprocess(
        "--vla-export", "e", "--vla-tasks", "libero_object:0", "--vla-num-episodes", "1", "--vla-max-steps", "6",
        "--vla-save-trajectories", "-p", "no:xdist",
    )  # fmt: skip
    # Not a trained model: it runs out of steps, which is a failure, never a harness error.
    result.assert_outcomes(failed=1)
    assert "cameras rendered: agentview, wrist" in result.stdout.str()
    (row,) = validate_report(pytester.path / "eval_output" / "report.json")["episodes"]
    assert (row["terminal_reason"], row["n_steps"]) == ("timeout", 6)
    saved = np.load(pytester.path / "eval_output" / "trajectories" / "libero_object_task0_episode_0.npz")
    assert saved["actions"].shape == (6, 7) and np.isfinite(saved["actions"]).all()


@pytest.mark.libero
def test_the_controller_state_is_the_controllers_pose() -> None:
    from pytest_vla.suites.base import StateConvention

    env = LiberoSuite().make_env(TASK, (), 7, StateConvention.of({"from": "controller", "quaternion": "antipodal"}))
    from robosuite.utils.transform_utils import mat2quat  # after the env: robosuite is imported quietly

    try:
        env.reset(0)
        observation, _ = env.step(np.array([0.5, 0.0, -0.5, 0.0, 0.0, 0.0, -1.0]))
        controller = env._env.env.robots[0].controller
        np.testing.assert_array_equal(observation.state[:3], controller.ee_pos)
        np.testing.assert_array_equal(observation.state[3:6], axis_angle(mat2quat(controller.ee_ori_mat), "antipodal"))
        np.testing.assert_array_equal(observation.state[6:], observation.raw["robot0_gripper_qpos"])
        # A different source than the observation's eef pose, though close to it.
        assert not np.array_equal(observation.state[:3], observation.raw["robot0_eef_pos"])
        np.testing.assert_allclose(observation.state[:3], observation.raw["robot0_eef_pos"], atol=0.02)
    finally:
        env.close()
