"""The export manifest (``vla_export.json``, format ``vla-export/1``): reading and checking it.

A manifest binds every ONNX input to a source in the observation and names the output that holds
the action. Every problem is reported as an :class:`ExportError` whose message is one line that
names the file and the key at fault.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MANIFEST_NAME = "vla_export.json"
# `--vla-export demo` names the scripted pick-and-place export shipped in the package
# (built by scripts/build_demo_export.py); a local directory called demo is `./demo`.
DEMO_NAME = "demo"
DEMO_EXPORT_DIR = Path(__file__).resolve().parent / "demo_export"
FORMAT = "vla-export/1"
CAMERAS = ("agentview", "wrist")
IMAGE_LAYOUTS = ("NCHW", "NHWC")
IMAGE_DTYPES = ("float32", "uint8")


class ExportError(Exception):
    """An export that cannot be evaluated; the message is one line naming the culprit."""


@dataclass(frozen=True)
class ImageInput:
    """A camera image: rotated to the protocol's orientation, resized, laid out and scaled."""

    name: str
    camera: str
    size: tuple[int, int]
    layout: str
    dtype: str
    value_range: tuple[float, float]


@dataclass(frozen=True)
class StateInput:
    """The suite's proprioceptive state vector (LIBERO: 8-D float32)."""

    name: str


@dataclass(frozen=True)
class ObservationInput:
    """Privileged: one raw simulator observation by key (LIBERO: ``robot0_gripper_qpos``, ...), float32."""

    name: str
    key: str


@dataclass(frozen=True)
class ObjectsOfInterestInput:
    """Privileged: world positions of the objects the task's goal names, in goal order: ``[1, k, 3]`` float32."""

    name: str


InputBinding = ImageInput | StateInput | ObservationInput | ObjectsOfInterestInput
SOURCES = ("image", "state", "obs", "objects_of_interest")


@dataclass(frozen=True)
class ActionSpec:
    """Which output holds the action, how many leading values the env gets, how much of a chunk runs."""

    output: str
    dim: int
    execute: int | None


@dataclass(frozen=True)
class Manifest:
    directory: Path
    model: Path
    inputs: tuple[InputBinding, ...]
    action: ActionSpec

    @property
    def cameras(self) -> tuple[str, ...]:
        """The cameras the export binds, in a stable order: only these are rendered."""
        bound = {binding.camera for binding in self.inputs if isinstance(binding, ImageInput)}
        return tuple(camera for camera in CAMERAS if camera in bound)


def resolve_export(value: str) -> Path:
    """The export directory an ``--vla-export`` value names."""
    if value == DEMO_NAME:
        return DEMO_EXPORT_DIR
    return Path(value).expanduser().resolve()


def load_manifest(export_dir: Path) -> Manifest:
    """Read and check ``<export_dir>/vla_export.json`` (without opening the model)."""
    if not export_dir.is_dir():
        raise ExportError(f"export directory not found: {export_dir}")
    path = export_dir / MANIFEST_NAME
    if not path.is_file():
        raise ExportError(f"{path}: missing (an export is a directory with {MANIFEST_NAME} and an ONNX model)")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ExportError(f"{path}: not valid JSON: {exc}") from None
    return parse_manifest(raw, export_dir)


def parse_manifest(raw: Any, export_dir: Path) -> Manifest:
    where = export_dir / MANIFEST_NAME
    if not isinstance(raw, dict):
        raise ExportError(f"{where}: the top level must be a JSON object")
    if raw.get("format") != FORMAT:
        raise ExportError(f"{where}: 'format' must be {FORMAT!r}, got {raw.get('format')!r}")
    model_name = raw.get("model")
    if not isinstance(model_name, str) or not model_name:
        raise ExportError(f"{where}: 'model' must name the ONNX file")
    model = export_dir / model_name
    if not model.is_file():
        raise ExportError(f"{where}: model file {model_name!r} not found in {export_dir}")
    inputs = raw.get("inputs")
    if not isinstance(inputs, dict) or not inputs:
        raise ExportError(f"{where}: 'inputs' must be a non-empty object mapping ONNX input names to sources")
    bindings = tuple(_parse_input(where, name, spec) for name, spec in inputs.items())
    return Manifest(directory=export_dir, model=model, inputs=bindings, action=_parse_action(where, raw))


def _parse_input(where: Path, name: str, spec: Any) -> InputBinding:
    at = f"{where}: inputs.{name}"
    if not isinstance(spec, dict):
        raise ExportError(f"{at} must be an object with a 'source'")
    source = spec.get("source")
    if source not in SOURCES:
        raise ExportError(f"{at}.source: unknown source {source!r} (known: {', '.join(map(repr, SOURCES))})")
    if source == "state":
        return StateInput(name=name)
    if source == "objects_of_interest":
        return ObjectsOfInterestInput(name=name)
    if source == "obs":
        key = spec.get("key")
        if not isinstance(key, str) or not key:
            raise ExportError(f"{at}.key must name a simulator observation (e.g. 'robot0_gripper_qpos'), got {key!r}")
        return ObservationInput(name=name, key=key)
    camera = spec.get("camera")
    if camera not in CAMERAS:
        raise ExportError(f"{at}.camera must be one of {list(CAMERAS)}, got {camera!r}")
    size = spec.get("size")
    if not (isinstance(size, list) and len(size) == 2 and all(_positive_int(v) for v in size)):
        raise ExportError(f"{at}.size must be [H, W] with positive integers, got {size!r}")
    layout = spec.get("layout", "NCHW")
    if layout not in IMAGE_LAYOUTS:
        raise ExportError(f"{at}.layout must be one of {list(IMAGE_LAYOUTS)}, got {layout!r}")
    dtype = spec.get("dtype", "float32")
    if dtype not in IMAGE_DTYPES:
        raise ExportError(f"{at}.dtype must be one of {list(IMAGE_DTYPES)}, got {dtype!r}")
    value_range = spec.get("range", [0, 1])
    if not (
        isinstance(value_range, list)
        and len(value_range) == 2
        and all(isinstance(v, int | float) and not isinstance(v, bool) for v in value_range)
        and value_range[0] < value_range[1]
    ):
        raise ExportError(f"{at}.range must be [low, high] with low < high, got {value_range!r}")
    return ImageInput(
        name=name,
        camera=camera,
        size=(size[0], size[1]),
        layout=layout,
        dtype=dtype,
        value_range=(float(value_range[0]), float(value_range[1])),
    )


def _parse_action(where: Path, raw: dict[str, Any]) -> ActionSpec:
    action = raw.get("action")
    if not isinstance(action, dict):
        raise ExportError(f"{where}: 'action' must be an object with 'output' and 'dim'")
    output = action.get("output")
    if not isinstance(output, str) or not output:
        raise ExportError(f"{where}: action.output must name the ONNX output that holds the action")
    dim = action.get("dim")
    if not _positive_int(dim):
        raise ExportError(f"{where}: action.dim must be a positive integer, got {dim!r}")
    execute = action.get("execute")
    if execute is not None and not _positive_int(execute):
        raise ExportError(f"{where}: action.execute must be a positive integer, got {execute!r}")
    return ActionSpec(output=output, dim=dim, execute=execute)


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def file_digest(path: Path) -> dict[str, Any]:
    """sha256 and size of one file, streamed so multi-GB weights never sit in memory."""
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return {"name": path.name, "sha256": digest.hexdigest(), "bytes": path.stat().st_size}


def export_files(export_dir: Path) -> list[dict[str, Any]]:
    """Digests of every top-level file of the export (manifest, model, external weights)."""
    return [file_digest(path) for path in sorted(export_dir.iterdir()) if path.is_file()]
