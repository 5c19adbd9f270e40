from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from pytest_vla.errors import ExportError
from pytest_vla.export.files import file_digest
from pytest_vla.export.manifest import ImageInput, StateInput, load_manifest
from tests.models import camera_export, state_only_export


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
        ("inputs.img.camera", "frontview", "inputs.img.camera"),
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
