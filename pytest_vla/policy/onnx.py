"""Running an ONNX export as a policy: observation -> model inputs -> action chunk."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pytest_vla.errors import ExportError, PolicyError, one_line
from pytest_vla.export.files import external_data, loaded_files
from pytest_vla.export.manifest import (
    ActionSpec,
    ConstantInput,
    ImageInput,
    InstructionInput,
    Manifest,
    NoiseInput,
    ObjectsOfInterestInput,
    ObservationInput,
    StateInput,
)
from pytest_vla.policy.feeds import (
    NUMPY_TYPES,
    accepted_types,
    binding_shapes,
    constant_tensor,
    noise_tensor,
    preprocess_image,
    state_vector,
)
from pytest_vla.policy.tokens import InstructionEncoder
from pytest_vla.report.schema import ONNX_EXPORT
from pytest_vla.suites.base import Observation, Suite, TaskSpec, state_choice_problem


@dataclass
class EpisodeContext:
    """What a query's feed depends on besides the observation: the episode, and the queries it has made so far."""

    seed: int
    task: TaskSpec
    episode_index: int
    query: int = 0


class OnnxPolicy:
    """An export loaded into onnxruntime (CUDA when usable, else CPU): a :class:`~pytest_vla.policy.base.Policy`.

    Call :meth:`begin_episode` before an episode's first :meth:`act`: the instruction and the
    noise of each query depend on the task and episode.
    """

    def __init__(self, manifest: Manifest, *, intra_op_threads: int = 0) -> None:
        import onnxruntime as ort

        self.manifest = manifest
        self.cameras = manifest.cameras
        self.state = manifest.state_convention
        # Checked before onnxruntime resolves them: the files the model's tensors are read from.
        self.external_data = external_data(manifest.model)
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
        self._input_types = {node.name: node.type for node in self.session.get_inputs()}
        self._check_bindings()
        self._encoders = {
            binding.name: InstructionEncoder(binding)
            for binding in manifest.inputs
            if isinstance(binding, InstructionInput)
        }
        self._episode: EpisodeContext | None = None
        self._files: list[dict[str, Any]] | None = None

    def loaded_files(self) -> list[dict[str, Any]]:
        """Digests of the files loaded (hashed once, after loading: a file replaced meanwhile shows)."""
        if self._files is None:
            self._files = loaded_files(self.manifest, self.external_data)
        return self._files

    def identity(self) -> dict[str, Any]:
        """The digests of the files loaded; where they were (``path``) tells, but two exports differ by digest only."""
        return {"kind": ONNX_EXPORT, "export_dir": str(self.manifest.directory), "export_files": self.loaded_files()}

    def check(self, suite: Suite, tasks: Sequence[TaskSpec]) -> list[str]:
        """The export against the suite: action width, each task's input shapes; truncated prompts as warnings."""
        if self.manifest.action.dim != suite.action_dim:
            raise ExportError(
                f"{self.manifest.where}: action.dim is {self.manifest.action.dim} but {suite.name} actions have "
                f"{suite.action_dim} values"
            )
        if self.manifest.action.gripper != "raw" and not suite.gripper_command_last:
            raise ExportError(
                f"{self.manifest.where}: action.gripper is {self.manifest.action.gripper!r}, but the {suite.name} "
                "suite's last action value is no gripper command in [-1, 1]: use 'raw'"
            )
        for binding in self.manifest.inputs:
            if isinstance(binding, StateInput):
                problem = state_choice_problem(binding.convention, suite)
                if problem:
                    raise ExportError(f"{self.manifest.where}: inputs.{binding.name}: {problem}")
            if isinstance(binding, ImageInput) and binding.camera not in suite.cameras:
                raise ExportError(
                    f"{self.manifest.where}: inputs.{binding.name}.camera is {binding.camera!r}; the {suite.name} "
                    f"suite's cameras are {', '.join(suite.cameras)}"
                )
        for task in tasks:
            self.check_shapes(binding_shapes(self.manifest, suite, task), task)
        return self.truncated_instructions(list(tasks), suite.state_dim)

    def _check_bindings(self) -> None:
        where = self.manifest.where
        for binding in self.manifest.inputs:
            model_type = self._input_types.get(binding.name)
            if model_type is None:
                raise ExportError(
                    f"{where}: inputs.{binding.name} is not an input of {self.manifest.model.name} "
                    f"(model inputs: {sorted(self._input_types)})"
                )
            accepted = accepted_types(binding)
            if model_type not in accepted:
                raise ExportError(
                    f"{where}: inputs.{binding.name}: model expects {model_type}, "
                    f"manifest gives {' or '.join(accepted)}"
                )
        unbound = sorted(set(self._input_types) - {binding.name for binding in self.manifest.inputs})
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
        where = self.manifest.where
        for node in self.session.get_inputs():
            expected = shapes[node.name]
            if len(node.shape) != len(expected) or any(
                isinstance(dim, int) and dim != want for dim, want in zip(node.shape, expected, strict=True)
            ):
                raise ExportError(
                    f"{where}: inputs.{node.name}: model shape {list(node.shape)} does not accept "
                    f"{list(expected)} (task {task.key})"
                )

    def truncated_instructions(self, tasks: list[TaskSpec], state_dim: int) -> list[str]:
        """One line per (input, task) whose prompt is longer than its ``max_length`` (at a zero state)."""
        lines = []
        for name, encoder in self._encoders.items():
            for task in tasks:
                encoded = encoder.encode(task.instruction, np.zeros(state_dim))
                if encoded.truncated:
                    lines.append(
                        f"inputs.{name}: the instruction of {task.key} has {encoded.full_length} tokens, "
                        f"truncated to {encoder.binding.max_length}: {task.instruction!r}"
                    )
        return lines

    def begin_episode(self, seed: int, task: TaskSpec, episode_index: int) -> None:
        self._episode = EpisodeContext(seed, task, episode_index)

    def inputs(self, observation: Observation) -> dict[str, np.ndarray]:
        """The model's feed for one observation of the current episode."""
        return self.feed(observation, self._episode)

    def feed(self, observation: Observation, episode: EpisodeContext | None) -> dict[str, np.ndarray]:
        """The model's feed for one observation of ``episode`` (each input with a batch dimension of 1).

        Needs nothing of this object's own episode: a server builds the feeds of several clients' episodes.
        Only instruction and noise inputs need an episode.
        """
        feed: dict[str, np.ndarray] = {}
        for binding in self.manifest.inputs:
            if isinstance(binding, StateInput):
                feed[binding.name] = state_vector(observation.state, binding)
            elif isinstance(binding, ObservationInput):
                if binding.key not in observation.raw:
                    raise PolicyError(f"inputs.{binding.name}: the observation has no key {binding.key!r}")
                feed[binding.name] = np.asarray(observation.raw[binding.key], dtype=np.float32)[None]
            elif isinstance(binding, ObjectsOfInterestInput):
                feed[binding.name] = np.asarray(observation.objects_of_interest, dtype=np.float32)[None]
            elif isinstance(binding, InstructionInput):
                episode = _started(episode)
                encoded = self._encoders[binding.name].encode(episode.task.instruction, observation.state)
                values = encoded.ids if binding.part == "tokens" else encoded.mask
                feed[binding.name] = values.astype(NUMPY_TYPES[self._input_types[binding.name]])[None]
            elif isinstance(binding, ConstantInput):
                feed[binding.name] = constant_tensor(binding)
            elif isinstance(binding, NoiseInput):
                episode = _started(episode)
                feed[binding.name] = noise_tensor(
                    binding, episode.seed, episode.task, episode.episode_index, episode.query
                )
            else:
                feed[binding.name] = preprocess_image(observation.images[binding.camera], binding)
        return feed

    def act(self, observation: Observation) -> np.ndarray:
        """The actions to execute before the next query: ``(K, dim)`` float64."""
        (output,) = self.session.run([self.manifest.action.output], self.feed(observation, self._episode))
        if self._episode is not None:
            self._episode.query += 1
        return action_chunk(np.asarray(output), self.manifest.action)

    def end_episode(self, success: bool, n_steps: int) -> None:
        self._episode = None

    def close(self) -> None:
        """Nothing to release: the session goes with the process."""


def _started(episode: EpisodeContext | None) -> EpisodeContext:
    if episode is None:
        raise PolicyError("begin_episode() was not called before the first query")
    return episode


def action_chunk(output: np.ndarray, spec: ActionSpec) -> np.ndarray:
    """Model output -> the ``(K, dim)`` actions the env gets: slice, unnormalize, gripper, execute."""
    if output.ndim == 2 and output.shape[0] == 1:
        chunk = output
    elif output.ndim == 3 and output.shape[0] == 1:
        chunk = output[0]
    else:
        raise PolicyError(f"output {spec.output!r} has shape {list(output.shape)}; expected [1, D] or [1, T, D]")
    if chunk.shape[1] < spec.dim:
        raise PolicyError(f"output {spec.output!r} has {chunk.shape[1]} values per action; action.dim is {spec.dim}")
    if spec.execute is not None and spec.execute > chunk.shape[0]:
        raise PolicyError(f"action.execute is {spec.execute} but the model returns {chunk.shape[0]} actions")
    chunk = chunk[: spec.execute, : spec.dim]
    if not np.all(np.isfinite(chunk)):
        raise PolicyError(f"output {spec.output!r} holds non-finite values (NaN or inf)")
    if spec.unnormalize is not None:
        chunk = spec.unnormalize.unnormalize(chunk)
    actions = chunk.astype(np.float64)
    gripper = actions[:, -1]
    if spec.gripper in ("binarize", "binarize_invert"):
        gripper = np.where(gripper < 0, -1.0, 1.0)  # a gripper command in [-1, 1]: LIBERO -1 open, +1 close
    if spec.gripper in ("invert", "binarize_invert"):
        gripper = -gripper
    actions[:, -1] = gripper
    return actions
