"""Running an ONNX export as a policy: observation -> model inputs -> action chunk."""

from __future__ import annotations

from typing import Any

import numpy as np

from pytest_vla.errors import one_line
from pytest_vla.export import ExportError, ImageInput, Manifest, StateInput
from pytest_vla.suites.base import Observation

_ONNX_DTYPES = {"float32": "tensor(float)", "uint8": "tensor(uint8)"}


class PolicyError(Exception):
    """The policy produced something the harness cannot execute (bad shape, NaN, ...)."""


class OnnxPolicy:
    """An export loaded into onnxruntime: CUDA when usable, else CPU."""

    def __init__(self, manifest: Manifest, *, state_dim: int, intra_op_threads: int = 0) -> None:
        import onnxruntime as ort

        self.manifest = manifest
        self.state_dim = state_dim
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
        where = self.manifest.directory / "vla_export.json"
        for binding in self.manifest.inputs:
            node = model_inputs.get(binding.name)
            if node is None:
                raise ExportError(
                    f"{where}: inputs.{binding.name} is not an input of {self.manifest.model.name} "
                    f"(model inputs: {sorted(model_inputs)})"
                )
            expected_shape, expected_type = self._expected(binding)
            if node.type != expected_type:
                raise ExportError(
                    f"{where}: inputs.{binding.name}: model expects {node.type}, manifest gives {expected_type}"
                )
            if len(node.shape) != len(expected_shape) or any(
                isinstance(dim, int) and dim != want for dim, want in zip(node.shape, expected_shape, strict=True)
            ):
                raise ExportError(
                    f"{where}: inputs.{binding.name}: model shape {list(node.shape)} does not accept "
                    f"{list(expected_shape)}"
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

    def _expected(self, binding: ImageInput | StateInput) -> tuple[tuple[int, ...], str]:
        if isinstance(binding, StateInput):
            return (1, self.state_dim), "tensor(float)"
        height, width = binding.size
        shape = (1, 3, height, width) if binding.layout == "NCHW" else (1, height, width, 3)
        return shape, _ONNX_DTYPES[binding.dtype]

    def inputs(self, observation: Observation) -> dict[str, np.ndarray]:
        """The model's feed for one observation."""
        feed: dict[str, np.ndarray] = {}
        for binding in self.manifest.inputs:
            if isinstance(binding, StateInput):
                feed[binding.name] = np.asarray(observation.state, dtype=np.float32).reshape(1, -1)
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


def synthetic_observation(cameras: tuple[str, ...], render_size: tuple[int, int], state_dim: int) -> Observation:
    """A mid-grey, zero-state observation of the suite's shapes, for the preflight check."""
    images: dict[str, Any] = {camera: np.full((*render_size, 3), 128, dtype=np.uint8) for camera in cameras}
    return Observation(images=images, state=np.zeros(state_dim, dtype=np.float32))
