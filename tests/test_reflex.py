"""reflex export directories (reflex_config.json, no vla_export.json), and `pytest-vla inspect`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from onnx import TensorProto
from safetensors.numpy import save_file

from pytest_vla.cli import main
from pytest_vla.errors import ExportError
from pytest_vla.export.files import export_files
from pytest_vla.export.manifest import load_manifest
from pytest_vla.policy.feeds import binding_shapes
from pytest_vla.policy.onnx import OnnxPolicy
from pytest_vla.report.schema import TaskSpec
from pytest_vla.suites.base import Observation
from pytest_vla.suites.libero import LiberoSuite
from tests.models import signature_policy, word_tokenizer

RNG = np.random.default_rng(5)
TASK = TaskSpec("libero_object", 0, "pick up the alphabet soup and place it in the basket", 280)
WORDS = [*TASK.instruction.split(), "Task", "State", "Action", ":", ",", ";", *map(str, range(256))]
IMAGE = {"smolvla": 512, "pi0": 224, "pi05": 224}
CAMERAS = {"smolvla": ("img_cam1", "img_cam2", "img_cam3"), "pi0": ("img_base", "img_wrist_l", "img_wrist_r")}
MASKS = {"smolvla": ("mask_cam1", "mask_cam2", "mask_cam3"), "pi0": ("mask_base", "mask_wrist_l", "mask_wrist_r")}
STATS = {
    "observation.state": {
        "mean": RNG.normal(size=8),
        "std": RNG.uniform(0.5, 2, 8),
        "q01": -RNG.uniform(0.5, 1, 8),
        "q99": RNG.uniform(0.5, 1, 8),
    },
    "action": {
        "mean": RNG.normal(size=7),
        "std": RNG.uniform(0.5, 2, 7),
        "q01": -RNG.uniform(0.5, 1, 7),
        "q99": RNG.uniform(0.5, 1, 7),
    },
}


def reflex_export(
    directory: Path, model_type: str, *, stats: bool = True, tokenizer: bool = True, **config: Any
) -> Path:
    """A reflex-layout directory whose tiny model has the I/O signature of that model type's export."""
    directory.mkdir(parents=True)
    family = {"pi05": "pi0"}.get(model_type, model_type if model_type in CAMERAS else "smolvla")
    names, masks, size = CAMERAS[family], MASKS[family], IMAGE.get(model_type, 512)
    signature: dict[str, tuple[int, list[int]]] = {name: (TensorProto.FLOAT, [1, 3, size, size]) for name in names}
    signature |= {name: (TensorProto.BOOL, [1]) for name in masks}
    signature |= {"lang_tokens": (TensorProto.INT64, [1, 16]), "lang_masks": (TensorProto.BOOL, [1, 16])}
    if model_type != "pi05":
        signature["state"] = (TensorProto.FLOAT, [1, 32])
    signature["noise"] = (TensorProto.FLOAT, [1, 50, 32])
    import onnx

    onnx.save(signature_policy(signature), directory / "model.onnx")
    (directory / "reflex_config.json").write_text(
        json.dumps(
            {
                "model_type": model_type,
                "export_kind": "monolithic",
                "chunk_size": 50,
                "action_dim": 32,
                "max_state_dim": 32,
                "tokenizer_bundled": tokenizer,
                **config,
            }
        )
    )
    if tokenizer:
        (directory / "tokenizer").mkdir()
        word_tokenizer(directory / "tokenizer" / "tokenizer.json", WORDS)
    if stats:
        flat = {
            f"{key}.{stat}": np.asarray(v, np.float32) for key, values in STATS.items() for stat, v in values.items()
        }
        save_file(
            {k: v for k, v in flat.items() if k.startswith("observation")},
            str(directory / "policy_preprocessor_step_5_normalizer_processor.safetensors"),
        )
        save_file(
            {k: v for k, v in flat.items() if k.startswith("action")},
            str(directory / "policy_postprocessor_step_0_unnormalizer_processor.safetensors"),
        )
    return directory


def _feed(directory: Path, state: np.ndarray) -> tuple[OnnxPolicy, dict[str, np.ndarray]]:
    manifest = load_manifest(directory)
    policy = OnnxPolicy(manifest)
    policy.check_shapes(binding_shapes(manifest, LiberoSuite(), TASK), TASK)
    policy.begin_episode(7, TASK, 0)
    frame = RNG.integers(0, 256, (256, 256, 3), dtype=np.uint8)
    return policy, policy.inputs(Observation(images={"agentview": frame, "wrist": frame}, state=state))


@pytest.mark.parametrize("model_type", ["smolvla", "pi0"])
def test_smolvla_and_pi0_reflex_exports_bind_without_a_manifest(tmp_path: Path, model_type: str) -> None:
    directory = reflex_export(tmp_path / "e", model_type)
    state = RNG.normal(size=8)
    policy, feed = _feed(directory, state)
    assert policy.manifest.source == "reflex_config.json" and policy.manifest.cameras == ("agentview", "wrist")
    first, _, third = CAMERAS[model_type]
    size = IMAGE[model_type]
    assert feed[first].shape == (1, 3, size, size) and feed[first].min() >= -1 and feed[first].max() <= 1
    assert (feed[third] == -1).all()
    assert [bool(feed[mask][0]) for mask in MASKS[model_type]] == [True, True, False]
    # LeRobot's mean/std normalization (pi0 and SmolVLA), zero-padded to max_state_dim.
    stats = STATS["observation.state"]
    expected = (state.astype(np.float32) - np.float32(stats["mean"])) / (np.float32(stats["std"]) + np.float32(1e-8))
    np.testing.assert_array_equal(feed["state"][0, :8], expected)
    assert not feed["state"][0, 8:].any()
    # The prompt ends with a newline, which a whitespace tokenizer drops: the 11 instruction words.
    assert feed["lang_masks"][0].sum() == 11
    actions = policy.act(
        Observation(
            images={"agentview": np.zeros((256, 256, 3), np.uint8), "wrist": np.zeros((256, 256, 3), np.uint8)},
            state=state,
        )
    )
    assert actions.shape == (5, 7) and np.isfinite(actions).all()


def test_pi05_reads_the_discretized_state_in_its_prompt(tmp_path: Path) -> None:
    directory = reflex_export(tmp_path / "e", "pi05")
    state = RNG.normal(size=8) * 0.3
    policy, feed = _feed(directory, state)
    assert "state" not in feed
    stats = STATS["observation.state"]
    q01, q99 = np.float32(stats["q01"]), np.float32(stats["q99"])
    normalized = np.pad(2 * (state.astype(np.float32) - q01) / (q99 - q01) - 1, (0, 24))
    bins = np.digitize(normalized, bins=np.linspace(-1, 1, 257)[:-1]) - 1
    prompt = f"Task: {TASK.instruction}, State: {' '.join(map(str, bins))};\nAction: "
    from tokenizers import Tokenizer

    ids = Tokenizer.from_file(str(directory / "tokenizer" / "tokenizer.json")).encode(prompt).ids
    np.testing.assert_array_equal(feed["lang_tokens"][0], ids[:16])
    assert feed["lang_masks"][0].all()  # 11 words + state: longer than 16 tokens
    assert any("truncated to 16" in line for line in policy.truncated_instructions([TASK], 8))


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: reflex_export(d, "smolvla", stats=False), "smolvla reflex export without normalization statistics"),
        (
            lambda d: reflex_export(d, "pi0", tokenizer=False),
            "no tokenizer/tokenizer.json (reflex_config.json says tokenizer_bundled=false)",
        ),
        (lambda d: reflex_export(d, "openvla"), "model_type 'openvla' has no known binding"),
        (lambda d: reflex_export(d, "pi05", export_kind="decomposed"), "only monolithic reflex exports"),
    ],
)
def test_what_a_reflex_export_lacks_is_named(tmp_path: Path, make, message: str) -> None:
    make(tmp_path / "e")
    with pytest.raises(ExportError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_manifest(tmp_path / "e")


def test_a_reflex_exports_files_are_those_its_binding_reads(tmp_path: Path) -> None:
    directory = reflex_export(tmp_path / "e", "pi0")
    norm_map = {"STATE": "MEAN_STD", "ACTION": "MEAN_STD"}
    preprocessor = {"steps": [{"registry_name": "normalizer_processor", "config": {"norm_map": norm_map}}]}
    (directory / "policy_preprocessor.json").write_text(json.dumps(preprocessor))
    (directory / "tokenizer" / "tokenizer_config.json").write_text("{}")  # not read: not part of the export
    (directory / "README.md").write_text("exported with reflex")
    assert [entry["name"] for entry in export_files(directory)] == [
        "model.onnx",
        "policy_postprocessor_step_0_unnormalizer_processor.safetensors",
        "policy_preprocessor.json",
        "policy_preprocessor_step_5_normalizer_processor.safetensors",
        "reflex_config.json",
        "tokenizer/tokenizer.json",
    ]


def test_a_reflex_export_runs_the_preflight(pytester: pytest.Pytester) -> None:
    reflex_export(pytester.path / "e", "pi0")
    result = pytester.runpytest_subprocess(
        "--vla-export", "e", "--vla-tasks", "libero_object:0", "--collect-only", "-q"
    )
    assert result.ret == pytest.ExitCode.OK, result.stderr.str()
    assert "libero/libero_object:0::ep0" in result.stdout.str()


# --- pytest-vla inspect ---------------------------------------------------------------------


def test_inspect_prints_the_binding_and_the_checks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reflex_export(tmp_path / "e", "smolvla")
    assert main(["inspect", str(tmp_path / "e"), "--tasks", "libero_object"]) == 0
    out = " ".join(capsys.readouterr().out.split())  # alignment aside
    assert "(binding from reflex_config.json)" in out
    assert (
        "img_cam1 tensor(float) [1, 3, 512, 512] camera agentview: 256x256 rotated 180 degrees, "
        "resized (pad) to 512x512, float32 in [-1, 1]" in out
    )
    assert (
        "state tensor(float) [1, 32] state (from observation, quaternion robosuite), normalized mean_std "
        "(policy_preprocessor_step_5_normalizer_processor.safetensors: 'observation.state'), zero-padded to 32"
    ) in out
    assert (
        "lang_tokens tensor(int64) [1, 16] instruction token ids: tokenizer.json, "
        "template '{instruction}\\n', 16 tokens" in out
    )
    assert "noise tensor(float) [1, 50, 32] standard normal noise, shape [1, 50, 32]" in out
    assert "action output 'actions': the first 7 values of each action, unnormalized mean_std" in out
    assert "checks passed on 10 libero task(s)" in out and "finite actions [5, 7]" in out


def test_inspect_names_a_failing_check_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    directory = reflex_export(tmp_path / "e", "pi0")
    (directory / "reflex_config.json").write_text(json.dumps({"model_type": "pi0", "chunk_size": 10, "action_dim": 32}))
    assert main(["inspect", str(directory), "--tasks", "libero_object:0"]) == 1
    captured = capsys.readouterr()
    assert "inputs" in captured.out  # the binding is shown before the check that fails
    (line,) = captured.err.splitlines()
    assert line.startswith("ERROR: ") and "inputs.noise: model shape [1, 50, 32] does not accept [1, 10, 32]" in line


def test_the_console_script_is_installed() -> None:
    script = Path(sys.executable).parent / "pytest-vla"
    result = subprocess.run(
        [str(script), "inspect", "demo", "--tasks", "libero_object:3"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert "objects tensor(float) [1, 'k', 3] privileged: positions of the goal's objects, in goal order" in " ".join(
        result.stdout.split()
    )
