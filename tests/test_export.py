from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from pytest_vla.errors import ExportError
from pytest_vla.export.files import export_files, file_digest
from pytest_vla.export.manifest import ImageInput, StateInput, load_manifest
from tests.models import camera_export, linear_policy, state_only_export, word_tokenizer, write_export


def _write_manifest(directory: Path, manifest: object) -> Path:
    directory.mkdir(exist_ok=True)
    (directory / "model.onnx").write_bytes(b"not checked here")
    (directory / "vla_export.json").write_text(json.dumps(manifest))
    return directory


GOOD = {
    "format": "vla-export/1",
    "model": "model.onnx",
    "inputs": {
        "img": {"source": "image", "camera": "wrist", "size": [224, 224], "layout": "NHWC", "dtype": "uint8"},
        "obs": {"source": "image", "camera": "agentview", "size": [64, 48], "range": [-1, 1]},
        "proprio": {"source": "state"},
    },
    "action": {"output": "actions", "dim": 7, "execute": 5},
}


def test_parses_a_complete_manifest(tmp_path: Path) -> None:
    manifest = load_manifest(_write_manifest(tmp_path / "e", GOOD))
    assert manifest.inputs == (
        ImageInput("img", "wrist", (224, 224), "NHWC", "uint8", (0.0, 1.0)),
        ImageInput("obs", "agentview", (64, 48), "NCHW", "float32", (-1.0, 1.0)),
        StateInput("proprio"),
    )
    assert manifest.cameras == ("agentview", "wrist")
    assert (manifest.action.output, manifest.action.dim, manifest.action.execute) == ("actions", 7, 5)


def test_a_state_only_export_binds_no_camera(tmp_path: Path) -> None:
    assert load_manifest(state_only_export(tmp_path / "e")).cameras == ()
    assert load_manifest(camera_export(tmp_path / "c")).cameras == ("agentview",)


def _variant(path: str, value: object) -> dict:
    manifest = json.loads(json.dumps(GOOD))
    *parents, last = path.split(".")
    node = manifest
    for key in parents:
        node = node[key]
    if value is None:
        del node[last]
    else:
        node[last] = value
    return manifest


@pytest.mark.parametrize(
    ("path", "value", "culprit"),
    [
        ("format", "vla-export/2", "'format'"),
        ("model", "missing.onnx", "missing.onnx"),
        ("inputs", {}, "'inputs'"),
        ("inputs.proprio", {"source": "lidar"}, "inputs.proprio.source"),
        ("inputs.img.camera", "front view", "inputs.img.camera"),
        ("inputs.img.size", [224], "inputs.img.size"),
        ("inputs.img.layout", "CHW", "inputs.img.layout"),
        ("inputs.img.dtype", "float16", "inputs.img.dtype"),
        ("inputs.obs.range", [1, -1], "inputs.obs.range"),
        ("action", None, "'action'"),
        ("action.dim", 0, "action.dim"),
        ("action.execute", "all", "action.execute"),
        ("action.output", "", "action.output"),
    ],
)
def test_each_bad_key_is_named_in_one_line(tmp_path: Path, path: str, value: object, culprit: str) -> None:
    with pytest.raises(ExportError) as excinfo:
        load_manifest(_write_manifest(tmp_path / "e", _variant(path, value)))
    message = str(excinfo.value)
    assert culprit in message
    assert "\n" not in message


def test_missing_directory_manifest_and_bad_json(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="export directory not found"):
        load_manifest(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ExportError, match=r"vla_export.json: missing"):
        load_manifest(tmp_path / "empty")
    (tmp_path / "empty" / "vla_export.json").write_text("{not json")
    with pytest.raises(ExportError, match="not valid JSON"):
        load_manifest(tmp_path / "empty")


def test_file_digest_matches_hashlib(tmp_path: Path) -> None:
    path = tmp_path / "weights.bin"
    data = bytes(range(256)) * 9000  # larger than one read block
    path.write_bytes(data)
    assert file_digest(path) == {"name": "weights.bin", "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


STATS = {"observation.state": {"mean": [0.0] * 8, "std": [1.0] * 8}, "action": {"mean": [0.0] * 7, "std": [1.0] * 7}}


def _instruction(**spec: object) -> dict:
    return {"source": "instruction_tokens", "tokenizer": "tok.json", "max_length": 8, **spec}


def _files(directory: Path) -> Path:
    """A tokenizer, statistics and a model in ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "model.onnx").write_bytes(b"not checked here")
    word_tokenizer(directory / "tok.json", ["pick"])
    (directory / "stats.json").write_text(json.dumps(STATS))
    return directory


@pytest.mark.parametrize(
    ("path", "value", "culprit"),
    [
        ("model", "{outside}/model.onnx", "'model'"),
        ("model", "../outside/model.onnx", "'model'"),
        ("inputs.tok", _instruction(tokenizer="{outside}/tok.json"), "inputs.tok.tokenizer"),
        ("inputs.tok", _instruction(tokenizer="sub/../../outside/tok.json"), "inputs.tok.tokenizer"),
        ("inputs.proprio.normalize", {"mode": "mean_std", "stats": "{outside}/stats.json"}, "normalize.stats"),
        ("action.unnormalize", {"mode": "mean_std", "stats": "../outside/stats.json"}, "action.unnormalize.stats"),
        (
            "inputs.tok",
            _instruction(template="{instruction}{state}", state={"normalize": {"mode": "min_max", "stats": "../s"}}),
            "inputs.tok.state.normalize.stats",
        ),
    ],
)
def test_a_path_outside_the_export_is_refused_naming_its_field(
    tmp_path: Path, path: str, value: object, culprit: str
) -> None:
    outside = _files(tmp_path / "outside")
    (tmp_path / "s").write_text(json.dumps({"observation.state": {"min": [0.0] * 8, "max": [1.0] * 8}}))
    value = json.loads(json.dumps(value).replace("{outside}", str(outside)))
    export = _write_manifest(_files(tmp_path / "e"), _variant(path, value))
    with pytest.raises(ExportError) as excinfo:
        load_manifest(export)
    message = str(excinfo.value)
    assert culprit in message and "must be a path inside the export directory" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("path", "value", "culprit", "cap"),
    [
        ("inputs.img.size", [4097, 224], "inputs.img.size", "1..4096"),
        ("inputs.tok", _instruction(max_length=8193), "inputs.tok.max_length", "1..8192"),
        ("inputs.proprio.pad_to", 10**9, "inputs.proprio.pad_to", "at most 8192"),
        ("inputs.tok", _instruction(template="{instruction}{state}", state={"pad_to": 10**9}), "state.pad_to", "8192"),
        ("inputs.c", {"source": "constant", "value": 0, "shape": [4096, 4096, 2]}, "inputs.c.shape", "16777216"),
        ("inputs.n", {"source": "noise", "shape": [1] * 17}, "inputs.n.shape", "more than 16"),
        ("inputs.tok", _instruction(template="{instruction:>99}"), "inputs.tok.template", "no format spec"),
        ("inputs.tok", _instruction(template="{instruction.__class__}"), "inputs.tok.template", "no format spec"),
        ("inputs.tok", _instruction(template="{instruction!r}"), "inputs.tok.template", "no format spec"),
    ],
)
def test_sizes_a_manifest_asks_for_are_bounded(
    tmp_path: Path, path: str, value: object, culprit: str, cap: str
) -> None:
    with pytest.raises(ExportError) as excinfo:
        load_manifest(_write_manifest(_files(tmp_path / "e"), _variant(path, value)))
    message = str(excinfo.value)
    assert culprit in message and cap in message
    assert "\n" not in message


def test_the_bounds_themselves_are_accepted(tmp_path: Path) -> None:
    manifest = _variant("inputs.img.size", [4096, 4096])
    manifest["inputs"]["proprio"]["pad_to"] = 8192
    manifest["inputs"]["tok"] = _instruction(max_length=8192, template="Task: {instruction}, State: {state};")
    manifest["inputs"]["c"] = {"source": "constant", "value": 0, "shape": [1, 4096, 4096]}
    load_manifest(_write_manifest(_files(tmp_path / "e"), manifest))


def test_export_files_are_exactly_the_files_an_evaluation_reads(tmp_path: Path) -> None:
    normalize = {"mode": "mean_std", "stats": "./stats/state.json"}
    export = write_export(tmp_path / "e", linear_policy(), {"state": {"source": "state", "normalize": normalize}})
    (export / "stats").mkdir()
    (export / "stats" / "state.json").write_text(json.dumps(STATS))
    files = export_files(export)
    assert [entry["name"] for entry in files] == ["model.onnx", "stats/state.json", "vla_export.json"]
    for entry in files:
        data = (export / entry["name"]).read_bytes()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest() and entry["bytes"] == len(data)
        assert entry["path"] == str((export / entry["name"]).resolve())
    # Files the evaluation never reads are not part of the export's identity.
    (export / "notes.txt").write_text("trained on the cluster")
    (export / ".git").mkdir()
    (export / ".git" / "HEAD").write_text("ref: refs/heads/main")
    (export / "stats" / "unused.json").write_text("{}")
    assert export_files(export) == files
