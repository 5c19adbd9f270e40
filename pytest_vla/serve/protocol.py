"""What ``pytest-vla serve`` tells clients and reads from them: the hello reply, episodes and observations.

Two kinds of client speak vla-eval protocol v1 (``docs/serve.md``): vla-eval's own (its ``Connection``,
``vla-eval run``), which send what vla-eval's benchmark client sends and take one action per
observation, and pytest-vla's, which say ``"pytest_vla": 2`` in their hello and exchange pytest-vla's
observations and whole chunks. vla-eval's plain clients are served as its LIBERO client, the only one
whose observations an export can bind (its camera and state names are the libero suite's).
Everything read here comes from a client: checked, and refused with a :class:`WireError` naming the key.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from pytest_vla import __version__
from pytest_vla.errors import short_repr
from pytest_vla.export.manifest import InstructionInput, ObjectsOfInterestInput, ObservationInput, StateInput
from pytest_vla.policy.onnx import EpisodeContext, OnnxPolicy
from pytest_vla.policy.wire import MAX_IMAGE_SIDE, PYTEST_VLA_EXTENSION, VLA_EVAL_PROTOCOL_VERSION, WireError
from pytest_vla.suites.base import Observation, StateConvention, TaskSpec
from pytest_vla.suites.libero.served import vla_eval_params_for, vla_eval_state_key, vla_eval_unservable

MODEL_SERVER = "pytest-vla serve"
MAX_TEXT = 4096  # characters of an instruction, family or task name
MAX_STATE = 4096  # values of a state vector
MAX_OBJECTS = 1024  # rows of objects_of_interest
# Plain vla-eval clients give no seed: their episodes draw noise as a pytest-vla run with this seed would.
PLAIN_SEED = 0
PLAIN_FAMILY = "vla-eval"  # a plain client's task family when its task names no suite


@dataclass(frozen=True)
class ServedExport:
    """What the served export reads of an observation, and its identity: told to every client in the hello."""

    cameras: tuple[str, ...]
    state: StateConvention
    reads_state: bool  # a state input, or a prompt with the state in it
    raw_keys: tuple[str, ...]
    objects_of_interest: bool
    action_dim: int
    identity: dict[str, Any]

    @classmethod
    def of(cls, policy: OnnxPolicy) -> ServedExport:
        manifest = policy.manifest
        inputs = manifest.inputs
        return cls(
            cameras=manifest.cameras,
            state=manifest.state_convention,
            reads_state=any(
                isinstance(binding, StateInput) or (isinstance(binding, InstructionInput) and binding.state is not None)
                for binding in inputs
            ),
            raw_keys=tuple(sorted({binding.key for binding in inputs if isinstance(binding, ObservationInput)})),
            objects_of_interest=any(isinstance(binding, ObjectsOfInterestInput) for binding in inputs),
            action_dim=manifest.action.dim,
            identity=_without_paths(policy.identity()),
        )

    def hello(self, max_batch_size: int, max_wait_ms: float) -> dict[str, Any]:
        """The hello reply's payload, the same to every client."""
        return {
            "harness_version": __version__,
            "protocol_version": VLA_EVAL_PROTOCOL_VERSION,
            "model_server": MODEL_SERVER,
            "capabilities": {},
            "observation_params": vla_eval_params_for(self.cameras, self.reads_state, self.state),
            "pytest_vla": {
                "version": PYTEST_VLA_EXTENSION,
                "cameras": list(self.cameras),
                "state": self.state.to_json(),
                "raw_keys": list(self.raw_keys),
                "objects_of_interest": self.objects_of_interest,
                "action_dim": self.action_dim,
                "policy": self.identity,
                "max_batch_size": max_batch_size,
                "max_wait_ms": max_wait_ms,
            },
        }

    def plain_refusal(self) -> str | None:
        """Why a plain vla-eval client cannot be served this export, if it cannot."""
        needs = [f"raw observation keys {list(self.raw_keys)}"] if self.raw_keys else []
        if self.objects_of_interest:
            needs.append("objects_of_interest")
        if needs:
            return (
                f"this export reads {' and '.join(needs)}, which a vla-eval client does not send: "
                "evaluate it with pytest-vla (--vla-policy-server)"
            )
        unservable = vla_eval_unservable(self.state)
        return f"{unservable}: evaluate it with pytest-vla (--vla-policy-server)" if unservable else None


def client_mode(hello: Mapping[str, Any]) -> bool:
    """Whether a client's hello asks for pytest-vla's extension; raise :class:`WireError` for another version."""
    if "pytest_vla" not in hello:
        return False
    if hello["pytest_vla"] != PYTEST_VLA_EXTENSION or isinstance(hello["pytest_vla"], bool):
        raise WireError(f"pytest_vla is {short_repr(hello['pytest_vla'])}; this server speaks {PYTEST_VLA_EXTENSION}")
    return True


def pytest_vla_episode(payload: Mapping[str, Any]) -> EpisodeContext:
    """The episode of a pytest-vla client's episode_start: ``pytest_vla: {seed, task, episode_index}``."""
    body = _map(payload, "pytest_vla", "")
    raw_task = _map(body, "task", "pytest_vla.")
    fields = {field.name: field for field in dataclasses.fields(TaskSpec)}
    unknown = sorted(set(raw_task) - set(fields), key=str)
    if unknown:
        raise WireError(f"pytest_vla.task has unknown key {short_repr(unknown[0])}")
    task = TaskSpec(
        family=_text(raw_task, "family", "pytest_vla.task."),
        index=_count(raw_task, "index", "pytest_vla.task."),
        instruction=_text(raw_task, "instruction", "pytest_vla.task."),
        max_steps=_count(raw_task, "max_steps", "pytest_vla.task."),
        clean_task=None if raw_task.get("clean_task") is None else _text(raw_task, "clean_task", "pytest_vla.task."),
        name=None if raw_task.get("name") is None else _text(raw_task, "name", "pytest_vla.task."),
    )
    return EpisodeContext(_integer(body, "seed", "pytest_vla."), task, _count(body, "episode_index", "pytest_vla."))


def plain_episode(payload: Mapping[str, Any]) -> EpisodeContext:
    """The episode of a vla-eval client's episode_start ``task`` (LIBERO: name, suite, task_id, episode_idx).

    Its noise is drawn as for a pytest-vla episode of seed :data:`PLAIN_SEED`, family ``suite`` and task
    ``task_id``; a key the task lacks takes a default (family :data:`PLAIN_FAMILY`, task and episode 0).
    """
    task = _map(payload, "task", "") if "task" in payload else {}
    family = _text(task, "suite", "task.") if "suite" in task else PLAIN_FAMILY
    instruction = _text(task, "name", "task.") if "name" in task else ""
    index = _count(task, "task_id", "task.") if "task_id" in task else 0
    episode = _count(task, "episode_idx", "task.") if "episode_idx" in task else 0
    return EpisodeContext(PLAIN_SEED, TaskSpec(family, index, instruction, max_steps=0), episode)


def pytest_vla_observation(payload: Mapping[str, Any], export: ServedExport) -> Observation:
    """A pytest-vla client's observation: ``pytest_vla: {images, state, raw, objects_of_interest}``."""
    body = _map(payload, "pytest_vla", "")
    images = _map(body, "images", "pytest_vla.")
    raw = _map(body, "raw", "pytest_vla.") if export.raw_keys else {}
    return Observation(
        images={camera: _image(images, camera, "pytest_vla.images.") for camera in export.cameras},
        state=_vector(body, "state", "pytest_vla.") if export.reads_state else np.zeros(0),
        raw={key: _array(raw, key, "pytest_vla.raw.") for key in export.raw_keys},
        objects_of_interest=_objects(body) if export.objects_of_interest else np.zeros((0, 3)),
    )


def plain_observation(payload: Mapping[str, Any], export: ServedExport) -> tuple[Observation, str | None]:
    """A vla-eval client's observation, and its ``task_description`` (None when it sends none).

    ``images.<camera>`` are upright already; the state is under the key the export's convention reads.
    """
    images = _map(payload, "images", "")
    key = vla_eval_state_key(export.state)
    observation = Observation(
        images={camera: _image(images, camera, "images.") for camera in export.cameras},
        state=_vector(payload, key, "") if export.reads_state else np.zeros(0),
    )
    instruction = _text(payload, "task_description", "") if "task_description" in payload else None
    return observation, instruction


def _map(parent: Mapping[str, Any], key: str, at: str) -> Mapping[str, Any]:
    value = _get(parent, key, at)
    if not isinstance(value, dict):
        raise WireError(f"{at}{key} is {_what(value)}, not a map")
    return value


def _get(parent: Mapping[str, Any], key: str, at: str) -> Any:
    if key not in parent:
        raise WireError(f"{at}{key} is missing")
    return parent[key]


def _text(parent: Mapping[str, Any], key: str, at: str) -> str:
    value = _get(parent, key, at)
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise WireError(f"{at}{key} is {short_repr(value)}, not a string of at most {MAX_TEXT} characters")
    return value


def _integer(parent: Mapping[str, Any], key: str, at: str) -> int:
    value = _get(parent, key, at)
    if not isinstance(value, int) or isinstance(value, bool):
        raise WireError(f"{at}{key} is {short_repr(value)}, not an integer")
    return value


def _count(parent: Mapping[str, Any], key: str, at: str) -> int:
    value = _integer(parent, key, at)
    if not 0 <= value < 2**31:
        raise WireError(f"{at}{key} is {value}, not in 0..2**31-1")
    return value


def _array(parent: Mapping[str, Any], key: str, at: str) -> np.ndarray:
    value = _get(parent, key, at)
    if not isinstance(value, np.ndarray):
        raise WireError(f"{at}{key} is {_what(value)}, not an array")
    return value


def _image(parent: Mapping[str, Any], camera: str, at: str) -> np.ndarray:
    image = _array(parent, camera, at)
    sides = image.shape[:2] if image.ndim == 3 else (0,)
    if (
        image.dtype != np.uint8
        or image.ndim != 3
        or image.shape[2] != 3
        or not 0 < min(sides) <= max(sides) <= MAX_IMAGE_SIDE
    ):
        raise WireError(f"{at}{camera} is {_what(image)}, not an HxWx3 uint8 image (sides 1..{MAX_IMAGE_SIDE})")
    return image


def _vector(parent: Mapping[str, Any], key: str, at: str) -> np.ndarray:
    vector = _array(parent, key, at)
    if vector.dtype.kind != "f" or vector.ndim != 1 or vector.shape[0] > MAX_STATE:
        raise WireError(f"{at}{key} is {_what(vector)}, not a float vector of at most {MAX_STATE} values")
    return vector


def _objects(body: Mapping[str, Any]) -> np.ndarray:
    objects = _array(body, "objects_of_interest", "pytest_vla.")
    if objects.dtype.kind != "f" or objects.ndim != 2 or objects.shape[1] != 3 or objects.shape[0] > MAX_OBJECTS:
        raise WireError(
            f"pytest_vla.objects_of_interest is {_what(objects)}, not (k, 3) floats with k <= {MAX_OBJECTS}"
        )
    return objects


def _what(value: Any) -> str:
    """What a value from a client is, for a refusal: ``a float64 array of shape [8]``, ``an int``, ``None``."""
    if value is None:
        return "None"
    if isinstance(value, np.ndarray):
        return f"a {value.dtype} array of shape {list(value.shape)}"
    name = type(value).__name__
    return f"{'an' if name[0] in 'aeiou' else 'a'} {name}"


def _without_paths(identity: dict[str, Any]) -> dict[str, Any]:
    """The export's identity as clients see it: digests and sizes, not where the files lie on the server."""
    files = [{key: value for key, value in entry.items() if key != "path"} for entry in identity["export_files"]]
    return {"kind": identity["kind"], "export_files": files}
