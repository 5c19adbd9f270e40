"""Running an ONNX export as a policy: observation -> model inputs -> action chunk."""

from __future__ import annotations

import difflib
from collections.abc import Mapping

import numpy as np

from pytest_vla.errors import one_line
from pytest_vla.export import (
    MANIFEST_NAME,
    ExportError,
    ImageInput,
    Manifest,
    ObjectsOfInterestInput,
    ObservationInput,
    StateInput,
)
from pytest_vla.suites.base import Observation, Suite, TaskSpec

_ONNX_DTYPES = {"float32": "tensor(float)", "uint8": "tensor(uint8)"}


class PolicyError(Exception):
    """The policy produced something the harness cannot execute (bad shape, NaN, ...)."""


class OnnxPolicy:
    """An export loaded into onnxruntime: CUDA when usable, else CPU."""

    def __init__(self, manifest: Manifest, *, intra_op_threads: int = 0) -> None:
        import onnxruntime as ort

        self.manifest = manifest
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        # Spinning threads steal the cores the simulator needs between two policy queries.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        providers = ["CPUExecutionProvider"]
        if "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(str(manifest.model), options, providers=providers)
        except Exception as exc:  # onnxruntime raises several unrelated types for a bad file
            raise ExportError(f"{manifest.model}: onnxruntime cannot load it: {one_line(exc)}") from None
        self.provider: str = self.session.get_providers()[0]
        self._check_bindings()

    def _check_bindings(self) -> None:
        model_inputs = {node.name: node for node in self.session.get_inputs()}
        where = self.manifest.directory / MANIFEST_NAME
        for binding in self.manifest.inputs:
            node = model_inputs.get(binding.name)
            if node is None:
                raise ExportError(
                    f"{where}: inputs.{binding.name} is not an input of {self.manifest.model.name} "
                    f"(model inputs: {sorted(model_inputs)})"
                )
            expected_type = _ONNX_DTYPES[binding.dtype] if isinstance(binding, ImageInput) else "tensor(float)"
            if node.type != expected_type:
                raise ExportError(
                    f"{where}: inputs.{binding.name}: model expects {node.type}, manifest gives {expected_type}"
                )
        unbound = sorted(set(model_inputs) - {binding.name for binding in self.manifest.inputs})
        if unbound:
            raise ExportError(f"{where}: model input(s) {unbound} are not bound in 'inputs'")
        outputs = [node.name for node in self.session.get_outputs()]
        if self.manifest.action.output not in outputs:
            raise ExportError(
                f"{where}: action.output {self.manifest.action.output!r} is not an output of the model "
                f"(outputs: {outputs})"
            )

    def check_shapes(self, shapes: Mapping[str, tuple[int, ...]], task: TaskSpec) -> None:
        """Raise :class:`ExportError` if a model input cannot take what ``task`` feeds it."""
        where = self.manifest.directory / MANIFEST_NAME
        for node in self.session.get_inputs():
            expected = shapes[node.name]
            if len(node.shape) != len(expected) or any(
                isinstance(dim, int) and dim != want for dim, want in zip(node.shape, expected, strict=True)
            ):
                raise ExportError(
                    f"{where}: inputs.{node.name}: model shape {list(node.shape)} does not accept "
                    f"{list(expected)} (task {task.key})"
                )

    def inputs(self, observation: Observation) -> dict[str, np.ndarray]:
        """The model's feed for one observation."""
        feed: dict[str, np.ndarray] = {}
        for binding in self.manifest.inputs:
            if isinstance(binding, StateInput):
                feed[binding.name] = np.asarray(observation.state, dtype=np.float32).reshape(1, -1)
            elif isinstance(binding, ObservationInput):
                if binding.key not in observation.raw:
                    raise PolicyError(f"inputs.{binding.name}: the observation has no key {binding.key!r}")
                feed[binding.name] = np.asarray(observation.raw[binding.key], dtype=np.float32)[None]
            elif isinstance(binding, ObjectsOfInterestInput):
                feed[binding.name] = np.asarray(observation.objects_of_interest, dtype=np.float32)[None]
            else:
                feed[binding.name] = preprocess_image(observation.images[binding.camera], binding)
        return feed

    def act(self, observation: Observation) -> np.ndarray:
        """The actions to execute before the next query: ``(K, dim)`` float64."""
        (output,) = self.session.run([self.manifest.action.output], self.inputs(observation))
        return self.action_chunk(np.asarray(output))

    def action_chunk(self, output: np.ndarray) -> np.ndarray:
        spec = self.manifest.action
        if output.ndim == 2 and output.shape[0] == 1:
            chunk = output
        elif output.ndim == 3 and output.shape[0] == 1:
            chunk = output[0]
        else:
            raise PolicyError(f"output {spec.output!r} has shape {list(output.shape)}; expected [1, D] or [1, T, D]")
        if chunk.shape[1] < spec.dim:
            raise PolicyError(
                f"output {spec.output!r} has {chunk.shape[1]} values per action; action.dim is {spec.dim}"
            )
        if spec.execute is not None and spec.execute > chunk.shape[0]:
            raise PolicyError(f"action.execute is {spec.execute} but the model returns {chunk.shape[0]} actions")
        chunk = chunk[: spec.execute, : spec.dim].astype(np.float64)
        if not np.all(np.isfinite(chunk)):
            raise PolicyError(f"output {spec.output!r} holds non-finite values (NaN or inf)")
        return chunk

    def check(self, observation: Observation) -> None:
        """Run once on a synthetic observation; raise :class:`ExportError` if the output is unusable."""
        try:
            self.act(observation)
        except PolicyError as exc:
            raise ExportError(f"{self.manifest.model}: on a synthetic observation: {exc}") from None
        except Exception as exc:
            raise ExportError(f"{self.manifest.model}: fails on a synthetic observation: {one_line(exc)}") from None


def preprocess_image(image: np.ndarray, binding: ImageInput) -> np.ndarray:
    """Resize (bilinear, only when the size differs), scale to the range, lay out, add the batch dim."""
    height, width = binding.size
    if image.shape[:2] != (height, width):
        from PIL import Image

        image = np.asarray(Image.fromarray(image).resize((width, height), resample=Image.Resampling.BILINEAR))
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


def binding_shapes(manifest: Manifest, suite: Suite, task: TaskSpec) -> dict[str, tuple[int, ...]]:
    """The shape of every model input as ``task`` feeds it; an unknown observation key is an :class:`ExportError`."""
    shapes: dict[str, tuple[int, ...]] = {}
    for binding in manifest.inputs:
        if isinstance(binding, StateInput):
            shapes[binding.name] = (1, suite.state_dim)
        elif isinstance(binding, ObjectsOfInterestInput):
            shapes[binding.name] = (1, len(suite.objects_of_interest(task)), 3)
        elif isinstance(binding, ObservationInput):
            shapes[binding.name] = (1, *_observation_shape(manifest, binding, suite, task))
        else:
            height, width = binding.size
            shapes[binding.name] = (1, 3, height, width) if binding.layout == "NCHW" else (1, height, width, 3)
    return shapes


def _observation_shape(manifest: Manifest, binding: ObservationInput, suite: Suite, task: TaskSpec) -> tuple[int, ...]:
    known = suite.observation_shapes(task)
    if binding.key in known:
        return known[binding.key]
    where = manifest.directory / MANIFEST_NAME
    if binding.key.endswith("_image"):
        hint = "camera images are bound with the 'image' source"
    else:
        close = difflib.get_close_matches(binding.key, known, n=3)
        hint = f"did you mean {' or '.join(map(repr, close))}?" if close else f"known: {', '.join(known)}"
    raise ExportError(
        f"{where}: inputs.{binding.name}.key: {binding.key!r} is not a {suite.name} observation of task {task.key} "
        f"({hint})"
    )


def synthetic_observation(suite: Suite, task: TaskSpec, cameras: tuple[str, ...]) -> Observation:
    """A mid-grey, all-zero observation of ``task``'s shapes, for the preflight check."""
    return Observation(
        images={camera: np.full((*suite.render_size, 3), 128, dtype=np.uint8) for camera in cameras},
        state=np.zeros(suite.state_dim, dtype=np.float32),
        raw={key: np.zeros(shape) for key, shape in suite.observation_shapes(task).items()},
        objects_of_interest=np.zeros((len(suite.objects_of_interest(task)), 3)),
    )
