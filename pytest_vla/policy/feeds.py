"""What each manifest source feeds the model: shapes and types, and the numbers themselves.

Every function here computes one input from one observation (or task), so each can be checked
against an independent computation; :mod:`pytest_vla.policy.onnx` assembles them into a feed.
"""

from __future__ import annotations

import difflib
import zlib

import numpy as np

from pytest_vla.errors import ExportError
from pytest_vla.export.manifest import (
    ConstantInput,
    ImageInput,
    InputBinding,
    InstructionInput,
    Manifest,
    NoiseInput,
    ObjectsOfInterestInput,
    ObservationInput,
    StateInput,
)
from pytest_vla.export.normalize import Normalization
from pytest_vla.suites.base import Observation, Suite, TaskSpec

# ONNX element types as onnxruntime names them.
ORT_TYPES = {
    "float32": "tensor(float)",
    "float16": "tensor(float16)",
    "int64": "tensor(int64)",
    "int32": "tensor(int32)",
    "uint8": "tensor(uint8)",
    "bool": "tensor(bool)",
}
NUMPY_TYPES = {ort: np.dtype(name) for name, ort in ORT_TYPES.items()}
TOKEN_TYPES = ("tensor(int64)", "tensor(int32)")
MASK_TYPES = ("tensor(bool)", "tensor(int64)", "tensor(int32)", "tensor(float)")


def accepted_types(binding: InputBinding) -> tuple[str, ...]:
    """The ONNX input types a binding can feed (tokens and masks follow the model's declared type)."""
    if isinstance(binding, ImageInput | ConstantInput):
        return (ORT_TYPES[binding.dtype],)
    if isinstance(binding, InstructionInput):
        return TOKEN_TYPES if binding.part == "tokens" else MASK_TYPES
    return (ORT_TYPES["float32"],)


def binding_shapes(manifest: Manifest, suite: Suite, task: TaskSpec) -> dict[str, tuple[int, ...]]:
    """The shape of every model input as ``task`` feeds it; what ``task`` cannot feed is an :class:`ExportError`."""
    shapes: dict[str, tuple[int, ...]] = {}
    for binding in manifest.inputs:
        if isinstance(binding, StateInput):
            shapes[binding.name] = (1, _state_width(manifest, binding, suite))
        elif isinstance(binding, ObjectsOfInterestInput):
            shapes[binding.name] = (1, len(suite.objects_of_interest(task)), 3)
        elif isinstance(binding, ObservationInput):
            shapes[binding.name] = (1, *_observation_shape(manifest, binding, suite, task))
        elif isinstance(binding, InstructionInput):
            shapes[binding.name] = (1, binding.max_length)
        elif isinstance(binding, ConstantInput | NoiseInput):
            shapes[binding.name] = binding.shape
        else:
            height, width = binding.size
            shapes[binding.name] = (1, 3, height, width) if binding.layout == "NCHW" else (1, height, width, 3)
    return shapes


def _state_width(manifest: Manifest, binding: StateInput, suite: Suite) -> int:
    where = manifest.where
    if binding.normalize is not None and binding.normalize.size != suite.state_dim:
        raise ExportError(
            f"{where}: inputs.{binding.name}.normalize: {binding.normalize.source.name} has "
            f"{binding.normalize.size} values for {binding.normalize.key!r}; the {suite.name} state has "
            f"{suite.state_dim}"
        )
    if binding.pad_to is not None and binding.pad_to < suite.state_dim:
        raise ExportError(
            f"{where}: inputs.{binding.name}.pad_to is {binding.pad_to}, shorter than the {suite.name} "
            f"state ({suite.state_dim})"
        )
    return binding.pad_to or suite.state_dim


def _observation_shape(manifest: Manifest, binding: ObservationInput, suite: Suite, task: TaskSpec) -> tuple[int, ...]:
    known = suite.observation_shapes(task)
    if binding.key in known:
        return known[binding.key]
    where = manifest.where
    if binding.key.endswith("_image"):
        hint = "camera images are bound with the 'image' source"
    else:
        close = difflib.get_close_matches(binding.key, known, n=3)
        hint = f"did you mean {' or '.join(map(repr, close))}?" if close else f"known: {', '.join(known)}"
    raise ExportError(
        f"{where}: inputs.{binding.name}.key: {binding.key!r} is not a {suite.name} observation of task {task.key} "
        f"({hint})"
    )


def preprocess_image(image: np.ndarray, binding: ImageInput) -> np.ndarray:
    """Resize (bilinear, only when the size differs), scale to the range, lay out, add the batch dim."""
    height, width = binding.size
    if image.shape[:2] != (height, width):
        image = _resize_with_pad(image, height, width) if binding.resize == "pad" else _stretch(image, height, width)
    pixels: np.ndarray
    if binding.dtype == "uint8":
        pixels = np.ascontiguousarray(image, dtype=np.uint8)
    else:
        # Same operation order as the reference pipelines (x / 255 * (high - low) + low), so float32
        # rounding matches theirs bit for bit.
        low, high = binding.value_range
        pixels = image.astype(np.float32) / np.float32(255.0)
        if (low, high) != (0.0, 1.0):
            pixels = pixels * np.float32(high - low) + np.float32(low)
    if binding.layout == "NCHW":
        pixels = pixels.transpose(2, 0, 1)
    return np.ascontiguousarray(pixels[None])


def _stretch(image: np.ndarray, height: int, width: int) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.fromarray(image).resize((width, height), resample=Image.Resampling.BILINEAR))


def _resize_with_pad(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """openpi's ``image_tools.resize_with_pad`` (PIL's port of ``tf.image.resize_with_pad``).

    Scale to fit keeping the aspect ratio, centre, pad with 0.
    """
    from PIL import Image

    source = Image.fromarray(image)
    ratio = max(source.width / width, source.height / height)
    resized = source.resize((int(source.width / ratio), int(source.height / ratio)), resample=Image.Resampling.BILINEAR)
    canvas = Image.new(resized.mode, (width, height), 0)
    canvas.paste(resized, (max(0, int((width - resized.width) / 2)), max(0, int((height - resized.height) / 2))))
    return np.asarray(canvas)


def state_vector(state: np.ndarray, binding: StateInput) -> np.ndarray:
    """The state as the model takes it: normalized, then zero-padded, ``[1, N]`` float32."""
    return normalized_and_padded(state, binding.normalize, binding.pad_to).reshape(1, -1)


def normalized_and_padded(state: np.ndarray, normalize: Normalization | None, pad_to: int | None) -> np.ndarray:
    values = np.asarray(state, dtype=np.float32)
    if normalize is not None:
        values = normalize.normalize(values)
    if pad_to is not None:
        values = np.pad(values, (0, max(0, pad_to - values.shape[0])))
    return values.astype(np.float32)


def constant_tensor(binding: ConstantInput) -> np.ndarray:
    return np.full(binding.shape, binding.value, dtype=np.dtype(binding.dtype))


def noise_tensor(binding: NoiseInput, seed: int, task: TaskSpec, episode_index: int, query: int) -> np.ndarray:
    """Standard normal noise that depends on (seed, task, episode, query) only, so every run draws the same."""
    entropy = [
        seed % 2**32,
        zlib.crc32(task.family.encode()),
        task.index,
        episode_index,
        query,
        zlib.crc32(binding.name.encode()),
    ]
    return np.random.default_rng(entropy).standard_normal(binding.shape, dtype=np.float32)


def synthetic_observation(suite: Suite, task: TaskSpec, cameras: tuple[str, ...]) -> Observation:
    """A mid-grey, all-zero observation of ``task``'s shapes, for the preflight check."""
    return Observation(
        images={
            camera: np.full((suite.cameras[camera].height, suite.cameras[camera].width, 3), 128, dtype=np.uint8)
            for camera in cameras
        },
        state=np.zeros(suite.state_dim, dtype=np.float32),
        raw={key: np.zeros(shape) for key, shape in suite.observation_shapes(task).items()},
        objects_of_interest=np.zeros((len(suite.objects_of_interest(task)), 3)),
        controller_pose=(np.zeros(3), np.eye(3)),  # at the origin, unrotated
    )
