"""The export manifest (``vla_export.json``, format ``vla-export/1``): reading and checking it.

A manifest binds every ONNX input to a source in the observation and names the output that holds
the action. Every problem is reported as an ``ExportError`` whose message is one line that
names the file and the key at fault.
"""

from __future__ import annotations

import re
import string
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from pytest_vla.errors import ExportError, StatsError, read_json, short_repr
from pytest_vla.export import FORMAT, MANIFEST_NAME
from pytest_vla.export.normalize import Normalization, load_normalization
from pytest_vla.export.reflex import REFLEX_CONFIG, is_reflex_export, reflex_manifest
from pytest_vla.suites.base import StateConvention

SUITE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")  # what a suite calls a camera, a state option or its choice
STATE_KEYS = ("source", "normalize", "pad_to")  # a state input's own keys: every other key chooses a state option
# Each tuple of choices lists its default first.
IMAGE_LAYOUTS = ("NCHW", "NHWC")
IMAGE_DTYPES = ("float32", "uint8")
RESIZE_MODES = ("stretch", "pad")
# Bounds on the sizes a manifest asks for, generous for real models: beyond them a typo or a hostile
# manifest would have the preflight allocate gigabytes (an image is resized, a constant filled, per query).
MAX_IMAGE_SIDE = 4096  # pixels, each side of an image input
MAX_TOKENS = 8192  # an instruction's max_length
MAX_STATE_WIDTH = 8192  # pad_to of a state vector (LIBERO's is 8, exported policies pad to 32)
MAX_ELEMENTS = 2**24  # elements of a constant or noise tensor
MAX_RANK = 16  # dimensions of a constant or noise tensor
TEMPLATE_FIELDS = ("instruction", "state")


@dataclass(frozen=True)
class ImageInput:
    """A camera image: rotated to the protocol's orientation, resized, laid out and scaled."""

    name: str
    camera: str
    size: tuple[int, int]
    layout: str
    dtype: str
    value_range: tuple[float, float]
    resize: str = "stretch"  # or "pad": aspect-preserving, zero padding (openpi's resize_with_pad)


@dataclass(frozen=True)
class StateInput:
    """The suite's proprioceptive state vector (LIBERO: 8-D float32), optionally normalized and padded."""

    name: str
    convention: StateConvention = field(default_factory=StateConvention)  # checked against the suite's options
    normalize: Normalization | None = None
    pad_to: int | None = None


@dataclass(frozen=True)
class ObservationInput:
    """Privileged: one raw simulator observation by key (LIBERO: ``robot0_gripper_qpos``, ...), float32."""

    name: str
    key: str


@dataclass(frozen=True)
class ObjectsOfInterestInput:
    """Privileged: world positions of the objects the task's goal names, in goal order: ``[1, k, 3]`` float32."""

    name: str


@dataclass(frozen=True)
class PromptState:
    """The state written into a prompt (pi0.5): normalized, padded, then discretized into 256 bins."""

    normalize: Normalization | None = None
    pad_to: int | None = None


@dataclass(frozen=True)
class InstructionInput:
    """The task instruction tokenized (``tokens``: ids) or its attention mask (``mask``), padded to ``max_length``."""

    name: str
    part: str  # "tokens" or "mask"
    tokenizer: Path
    max_length: int
    template: str = "{instruction}"
    pad_id: int | None = None  # None: the tokenizer's own padding id, else 0
    state: PromptState | None = None  # set when the template has {state}


@dataclass(frozen=True)
class ConstantInput:
    """A fixed tensor (e.g. the mask of a camera the suite does not have)."""

    name: str
    value: float
    dtype: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class NoiseInput:
    """Standard normal float32, from an RNG seeded by (seed, task, episode, query): runs reproduce."""

    name: str
    shape: tuple[int, ...]


InputBinding = (
    ImageInput | StateInput | ObservationInput | ObjectsOfInterestInput | InstructionInput | ConstantInput | NoiseInput
)
SOURCES = (
    "image",
    "state",
    "obs",
    "objects_of_interest",
    "instruction_tokens",
    "instruction_mask",
    "constant",
    "noise",
)
GRIPPER_MODES = ("raw", "binarize", "invert", "binarize_invert")
CONSTANT_DTYPES = ("float32", "float16", "int64", "int32", "uint8", "bool")


@dataclass(frozen=True)
class ActionSpec:
    """Which output holds the action and how it becomes what the env gets.

    Per action of the chunk: the first ``dim`` values, unnormalized, the gripper (last value)
    transformed; the first ``execute`` actions run before the policy is asked again.
    """

    output: str
    dim: int
    execute: int | None
    unnormalize: Normalization | None = None
    gripper: str = "raw"


@dataclass(frozen=True)
class Manifest:
    directory: Path
    model: Path
    inputs: tuple[InputBinding, ...]
    action: ActionSpec
    source: str = MANIFEST_NAME  # the file the binding comes from (reflex_config.json for reflex exports)

    @property
    def where(self) -> Path:
        """The file to name in error messages."""
        return self.directory / self.source

    @property
    def named_files(self) -> tuple[Path, ...]:
        """The files the binding names: the model, tokenizers and statistics (the model's external data aside)."""
        named = [self.model]
        for binding in self.inputs:
            if isinstance(binding, InstructionInput):
                named.append(binding.tokenizer)
                if binding.state is not None and binding.state.normalize is not None:
                    named.append(binding.state.normalize.source)
            elif isinstance(binding, StateInput) and binding.normalize is not None:
                named.append(binding.normalize.source)
        if self.action.unnormalize is not None:
            named.append(self.action.unnormalize.source)
        return tuple(dict.fromkeys(named))

    @property
    def cameras(self) -> tuple[str, ...]:
        """The cameras the export binds, sorted: only these are rendered."""
        return tuple(sorted({binding.camera for binding in self.inputs if isinstance(binding, ImageInput)}))

    @property
    def state_convention(self) -> StateConvention:
        """How the env computes the state (one convention per export; checked when parsing)."""
        states = [binding.convention for binding in self.inputs if isinstance(binding, StateInput)]
        return states[0] if states else StateConvention()


def load_manifest(export_dir: Path) -> Manifest:
    """Read and check ``<export_dir>/vla_export.json``, or derive it for a reflex export; the model is not opened."""
    if not export_dir.is_dir():
        raise ExportError(f"export directory not found: {export_dir}")
    path = export_dir / MANIFEST_NAME
    if not path.is_file() and is_reflex_export(export_dir):
        return parse_manifest(reflex_manifest(export_dir), export_dir, source=REFLEX_CONFIG)
    if not path.is_file():
        raise ExportError(
            f"{path}: missing (an export is a directory with {MANIFEST_NAME} and an ONNX model, "
            f"or a reflex export with {REFLEX_CONFIG})"
        )
    try:
        raw = read_json(path, ExportError, object_pairs_hook=_unique_keys)
    except _DuplicateKey as exc:
        raise ExportError(f"{path}: {exc.args[0]!r} appears twice in one object (each input is bound once)") from None
    return parse_manifest(raw, export_dir)


class _DuplicateKey(Exception):
    pass


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json.loads keeps the last of two equal keys silently; a binding must not vanish that way."""
    keys = [key for key, _ in pairs]
    for key in keys:
        if keys.count(key) > 1:
            raise _DuplicateKey(key)
    return dict(pairs)


def parse_manifest(raw: Any, export_dir: Path, source: str = MANIFEST_NAME) -> Manifest:
    where = export_dir / source
    if not isinstance(raw, dict):
        raise ExportError(f"{where}: the top level must be a JSON object")
    if raw.get("format") != FORMAT:
        raise ExportError(f"{where}: 'format' must be {FORMAT!r}, got {raw.get('format')!r}")
    model_name = raw.get("model")
    if not isinstance(model_name, str) or not model_name:
        raise ExportError(f"{where}: 'model' must name the ONNX file")
    model = export_member(export_dir, model_name, f"{where}: 'model'")
    if not model.is_file():
        raise ExportError(f"{where}: model file {model_name!r} not found in {export_dir}")
    inputs = raw.get("inputs")
    if not isinstance(inputs, dict) or not inputs:
        raise ExportError(f"{where}: 'inputs' must be a non-empty object mapping ONNX input names to sources")
    bindings = tuple(_parse_input(where, name, spec) for name, spec in inputs.items())
    conventions = {binding.convention for binding in bindings if isinstance(binding, StateInput)}
    if len(conventions) > 1:
        raise ExportError(f"{where}: the state inputs choose different state options")
    return Manifest(directory=export_dir, model=model, inputs=bindings, action=_parse_action(where, raw), source=source)


def _parse_input(where: Path, name: str, spec: Any) -> InputBinding:
    at = f"{where}: inputs.{name}"
    if not isinstance(spec, dict):
        raise ExportError(f"{at} must be an object with a 'source'")
    source = spec.get("source")
    if source not in SOURCES:
        raise ExportError(f"{at}.source: unknown source {source!r} (known: {', '.join(map(repr, SOURCES))})")
    if source == "state":
        return _parse_state(where, at, name, spec)
    if source == "objects_of_interest":
        return ObjectsOfInterestInput(name=name)
    if source == "obs":
        key = spec.get("key")
        if not isinstance(key, str) or not key:
            raise ExportError(f"{at}.key must name a simulator observation (e.g. 'robot0_gripper_qpos'), got {key!r}")
        return ObservationInput(name=name, key=key)
    if source in ("instruction_tokens", "instruction_mask"):
        return _parse_instruction(where, at, name, spec, "tokens" if source == "instruction_tokens" else "mask")
    if source == "constant":
        return _parse_constant(at, name, spec)
    if source == "noise":
        return NoiseInput(name=name, shape=_shape(at, spec.get("shape")))
    return _parse_image(at, name, spec)


def _parse_image(at: str, name: str, spec: dict[str, Any]) -> ImageInput:
    camera = spec.get("camera")
    if not (isinstance(camera, str) and SUITE_NAME.fullmatch(camera)):
        raise ExportError(f"{at}.camera must name one of the suite's cameras (e.g. 'agentview'), got {camera!r}")
    size = spec.get("size")
    if not (isinstance(size, list) and len(size) == 2 and all(_positive_int(v) and v <= MAX_IMAGE_SIDE for v in size)):
        raise ExportError(f"{at}.size must be [H, W] with integers in 1..{MAX_IMAGE_SIDE}, got {size!r}")
    layout = _choice(at, spec, "layout", IMAGE_LAYOUTS)
    dtype = _choice(at, spec, "dtype", IMAGE_DTYPES)
    value_range = spec.get("range", [0, 1])
    if not (
        isinstance(value_range, list)
        and len(value_range) == 2
        and all(_number(v) for v in value_range)
        and value_range[0] < value_range[1]
    ):
        raise ExportError(f"{at}.range must be [low, high] with low < high, got {value_range!r}")
    resize = _choice(at, spec, "resize", RESIZE_MODES)
    return ImageInput(
        name=name,
        camera=camera,
        size=(size[0], size[1]),
        layout=layout,
        dtype=dtype,
        value_range=(float(value_range[0]), float(value_range[1])),
        resize=resize,
    )


def _parse_state(where: Path, at: str, name: str, spec: dict[str, Any]) -> StateInput:
    pad_to = _pad_to(at, spec)
    normalize = _normalization(where, f"{at}.normalize", spec.get("normalize"), "observation.state")
    choices = {option: value for option, value in spec.items() if option not in STATE_KEYS}
    for option, value in choices.items():
        if not SUITE_NAME.fullmatch(option) or not (isinstance(value, str) and SUITE_NAME.fullmatch(value)):
            raise ExportError(
                f"{at}: {short_repr(option, 64)}: {short_repr(value, 64)} is not a choice of a state option by name "
                '(e.g. "quaternion": "antipodal")'
            )
    return StateInput(name=name, convention=StateConvention.of(choices), normalize=normalize, pad_to=pad_to)


def _parse_instruction(where: Path, at: str, name: str, spec: dict[str, Any], part: str) -> InstructionInput:
    tokenizer = spec.get("tokenizer")
    if not isinstance(tokenizer, str) or not tokenizer:
        raise ExportError(f"{at}.tokenizer must name the export's tokenizer.json")
    path = export_member(where.parent, tokenizer, f"{at}.tokenizer")
    if not path.is_file():
        raise ExportError(f"{at}.tokenizer: {tokenizer!r} not found in {where.parent}")
    max_length = spec.get("max_length")
    if not (_positive_int(max_length) and max_length <= MAX_TOKENS):
        raise ExportError(f"{at}.max_length must be an integer in 1..{MAX_TOKENS}, got {max_length!r}")
    template = spec.get("template", "{instruction}")
    fields = _template_fields(at, template)
    state = _prompt_state(where, at, spec.get("state")) if "state" in fields else None
    pad_id = spec.get("pad_id")
    if pad_id is not None and not (isinstance(pad_id, int) and not isinstance(pad_id, bool) and pad_id >= 0):
        raise ExportError(f"{at}.pad_id must be a non-negative integer, got {pad_id!r}")
    return InstructionInput(
        name=name, part=part, tokenizer=path, max_length=max_length, template=template, pad_id=pad_id, state=state
    )


def _template_fields(at: str, template: Any) -> set[str]:
    """The fields of a prompt template; only bare {instruction} and {state}: a format spec or conversion
    (``{instruction:>999999999}``, ``{instruction.__class__}``) would let a manifest build any string."""
    if not isinstance(template, str):
        raise ExportError(f"{at}.template must be a string containing '{{instruction}}', got {template!r}")
    try:
        parts = list(string.Formatter().parse(template))
    except ValueError:
        raise ExportError(f"{at}.template has an unmatched brace: {template!r}") from None
    fields = set()
    for _, name, spec, conversion in parts:
        if name is None:
            continue
        if name not in TEMPLATE_FIELDS or spec or conversion:
            raise ExportError(
                f"{at}.template may hold only {{instruction}} and {{state}}, with no format spec or conversion, "
                f"got {template!r}"
            )
        fields.add(name)
    if "instruction" not in fields:
        raise ExportError(f"{at}.template must be a string containing '{{instruction}}', got {template!r}")
    return fields


def _prompt_state(where: Path, at: str, spec: Any) -> PromptState:
    if spec is None:
        return PromptState()
    if not isinstance(spec, dict):
        raise ExportError(f"{at}.state must be an object with 'normalize' and/or 'pad_to'")
    return PromptState(
        normalize=_normalization(where, f"{at}.state.normalize", spec.get("normalize"), "observation.state"),
        pad_to=_pad_to(f"{at}.state", spec),
    )


def _parse_constant(at: str, name: str, spec: dict[str, Any]) -> ConstantInput:
    value = spec.get("value")
    if not (_number(value) or isinstance(value, bool)):
        raise ExportError(f"{at}.value must be a number or a boolean, got {value!r}")
    dtype = _choice(at, spec, "dtype", CONSTANT_DTYPES)
    return ConstantInput(name=name, value=value, dtype=dtype, shape=_shape(at, spec.get("shape")))


def _shape(at: str, shape: Any) -> tuple[int, ...]:
    if not (isinstance(shape, list) and shape and all(_positive_int(v) for v in shape)):
        raise ExportError(f"{at}.shape must be a non-empty list of positive integers, got {shape!r}")
    if len(shape) > MAX_RANK:
        raise ExportError(f"{at}.shape has {len(shape)} dimensions, more than {MAX_RANK}")
    elements = 1
    for dim in shape:
        elements *= dim
        if elements > MAX_ELEMENTS:
            raise ExportError(f"{at}.shape {shape!r} holds more than {MAX_ELEMENTS} elements (2**24)")
    return tuple(shape)


def _pad_to(at: str, spec: dict[str, Any]) -> int | None:
    pad_to = _optional_positive_int(at, spec, "pad_to")
    if pad_to is not None and pad_to > MAX_STATE_WIDTH:
        raise ExportError(f"{at}.pad_to must be at most {MAX_STATE_WIDTH}, got {pad_to}")
    return pad_to


def _normalization(where: Path, at: str, spec: Any, default_key: str) -> Normalization | None:
    if spec is None:
        return None
    if not isinstance(spec, dict):
        raise ExportError(f"{at} must be an object with 'mode' and 'stats'")
    mode, stats, key = spec.get("mode"), spec.get("stats"), spec.get("key", default_key)
    if not isinstance(stats, str) or not stats:
        raise ExportError(f"{at}.stats must name a statistics file of the export (.json or .safetensors)")
    if not isinstance(key, str):
        raise ExportError(f"{at}.key must be a string, got {key!r}")
    try:
        return load_normalization(export_member(where.parent, stats, f"{at}.stats"), key, mode)
    except StatsError as exc:
        raise ExportError(f"{at}: {exc}") from None


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
    execute = _optional_positive_int(f"{where}: action", action, "execute")
    gripper = _choice(f"{where}: action", action, "gripper", GRIPPER_MODES)
    unnormalize = _normalization(where, f"{where}: action.unnormalize", action.get("unnormalize"), "action")
    if unnormalize is not None and unnormalize.size < dim:
        raise ExportError(
            f"{where}: action.unnormalize: {unnormalize.source.name} has {unnormalize.size} values for "
            f"{unnormalize.key!r}, fewer than action.dim {dim}"
        )
    return ActionSpec(output=output, dim=dim, execute=execute, unnormalize=unnormalize, gripper=gripper)


def export_member(export_dir: Path, name: str, at: str) -> Path:
    """``export_dir / name`` for a name that stays inside the directory: relative, without '..'.

    Only the name is checked: a symlink inside the directory is followed wherever it points (a model
    hub's cache links each file into its blob store), and the report records where each file really was.
    """
    path = PurePosixPath(name)
    if path.is_absolute() or ".." in path.parts or not path.parts or "\0" in name:
        raise ExportError(f"{at}: {name!r} must be a path inside the export directory (relative, without '..')")
    return export_dir / path


def _choice(at: str, spec: dict[str, Any], key: str, choices: tuple[str, ...]) -> str:
    """``spec[key]``, one of ``choices``; the first choice when absent."""
    value = spec.get(key, choices[0])
    if value not in choices:
        raise ExportError(f"{at}.{key} must be one of {list(choices)}, got {value!r}")
    return value


def _optional_positive_int(at: str, spec: dict[str, Any], key: str) -> int | None:
    value = spec.get(key)
    if value is not None and not _positive_int(value):
        raise ExportError(f"{at}.{key} must be a positive integer, got {value!r}")
    return value


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0
