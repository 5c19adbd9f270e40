"""An export's resolved binding in words, for ``pytest-vla inspect``."""

from __future__ import annotations

from pytest_vla.export.manifest import (
    ActionSpec,
    ConstantInput,
    ImageInput,
    InputBinding,
    InstructionInput,
    NoiseInput,
    ObjectsOfInterestInput,
    ObservationInput,
    StateInput,
)
from pytest_vla.export.normalize import Normalization
from pytest_vla.suites.base import StateConvention, Suite


def describe_binding(binding: InputBinding, suite: Suite) -> str:
    """What feeds one model input of an export evaluated on ``suite``, and how it is preprocessed."""
    cameras = suite.cameras
    if isinstance(binding, ImageInput):
        height, width = binding.size
        low, high = binding.value_range
        scale = "uint8 pixels" if binding.dtype == "uint8" else f"float32 in [{low:g}, {high:g}]"
        camera = cameras.get(binding.camera)
        if camera is None:
            return f"camera {binding.camera}: not one of the suite's ({', '.join(cameras)})"
        rendered = (camera.height, camera.width)
        resize = "as rendered" if binding.size == rendered else f"resized ({binding.resize}) to {height}x{width}"
        return (
            f"camera {binding.camera}: {camera.height}x{camera.width} {camera.orientation}, {resize}, {scale}, "
            f"{binding.layout}"
        )
    if isinstance(binding, StateInput):
        parts = [describe_state(binding.convention, suite)]
        if binding.normalize is not None:
            parts.append(f"normalized {_stats(binding.normalize)}")
        if binding.pad_to is not None:
            parts.append(f"zero-padded to {binding.pad_to}")
        return ", ".join(parts)
    if isinstance(binding, ObservationInput):
        return f"privileged: raw observation {binding.key!r}"
    if isinstance(binding, ObjectsOfInterestInput):
        return "privileged: positions of the goal's objects, in goal order"
    if isinstance(binding, InstructionInput):
        what = "token ids" if binding.part == "tokens" else "attention mask"
        pad = f"pad id {binding.pad_id}" if binding.pad_id is not None else "the tokenizer's pad id (else 0)"
        text = f"instruction {what}: {binding.tokenizer.name}, template {binding.template!r}, {binding.max_length} "
        text += f"tokens, right-padded with {pad}"
        if binding.state is not None:
            normalize = f"normalized {_stats(binding.state.normalize)}, " if binding.state.normalize else ""
            pad_to = f"padded to {binding.state.pad_to}, " if binding.state.pad_to else ""
            text += f"; {{state}}: {normalize}{pad_to}256 bins over [-1, 1]"
        return text
    if isinstance(binding, ConstantInput):
        return f"constant {binding.value!r} ({binding.dtype}, shape {list(binding.shape)})"
    assert isinstance(binding, NoiseInput)
    return f"standard normal noise, shape {list(binding.shape)}, seeded by (seed, task, episode, query)"


def describe_state(state: StateConvention, suite: Suite) -> str:
    """``state (from observation, quaternion antipodal)``: each of the suite's options as ``state`` chooses it."""
    choices = ", ".join(f"{option} {state.choice(option, suite.state_options)}" for option in suite.state_options)
    return f"state ({choices})" if choices else "state"


def describe_action(spec: ActionSpec) -> str:
    parts = [f"output {spec.output!r}: the first {spec.dim} values of each action"]
    if spec.unnormalize is not None:
        parts.append(f"unnormalized {_stats(spec.unnormalize)}")
    parts.append(f"gripper {spec.gripper}")
    parts.append(f"the first {spec.execute} of each chunk run" if spec.execute else "the whole chunk runs")
    return ", ".join(parts)


def _stats(normalization: Normalization) -> str:
    return f"{normalization.mode} ({normalization.source.name}: {normalization.key!r})"
