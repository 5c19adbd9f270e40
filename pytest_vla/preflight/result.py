"""What the simulator preflight found: passed, or one classified failure with its remedy, and its timings."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any


class PreflightFailure(str, Enum):
    INPUT_HANG = "input-hang"
    EGL_BLACK_FRAMES = "egl-black-frames"
    EGL_DEVICE = "egl-device"
    OSMESA_COMPILE_HANG = "osmesa-compile-hang"
    DEP_VERSION_CONFLICT = "dep-version-conflict"
    IMPORT_ERROR = "import-error"
    SCENE_SETTLE = "scene-settle"
    EXPORT_INVALID = "export-invalid"
    POLICY_INVALID = "policy-invalid"  # a served or plugin policy that fails on a real observation

    def __str__(self) -> str:  # the value, as enum.StrEnum (Python 3.11+ only) would give
        return self.value

    @property
    def remedy(self) -> str:
        return _REMEDIES[self]


_REMEDIES = {
    PreflightFailure.INPUT_HANG: "the stack waits for an answer on its first import: create its config first, "
    "or run it once by hand",
    PreflightFailure.EGL_BLACK_FRAMES: "the GL backend renders nothing: with MUJOCO_GL=egl install the NVIDIA EGL "
    "driver (libnvidia-gl) or pick another MUJOCO_EGL_DEVICE_ID; or use --vla-render osmesa",
    PreflightFailure.EGL_DEVICE: "EGL cannot open a device: check the GPU is visible (nvidia-smi, "
    "CUDA_VISIBLE_DEVICES, --vla-gpus) and the NVIDIA EGL driver is installed; or use --vla-render osmesa",
    PreflightFailure.OSMESA_COMPILE_HANG: "the scene did not build in time: OSMesa compiles slowly on a loaded or "
    "small machine; raise --vla-preflight-timeout, use fewer workers, or --vla-render egl on a GPU host",
    PreflightFailure.DEP_VERSION_CONFLICT: "install the versions the suite's protocol is defined on (docs/suites.md)",
    PreflightFailure.IMPORT_ERROR: "the simulation stack does not import or cannot render: reinstall it "
    "(pip install pytest-vla) and, for OSMesa, apt-get install libosmesa6",
    PreflightFailure.SCENE_SETTLE: "objects are not at rest where the reset puts them: the MuJoCo version "
    "places them differently from the one the protocol is defined on",
    PreflightFailure.EXPORT_INVALID: "the export fails on a real observation: check its input bindings and "
    "preprocessing against the model (pytest-vla inspect EXPORT)",
    PreflightFailure.POLICY_INVALID: "the policy fails on a real observation: check the server's model, config and "
    "protocol (--vla-policy-protocol) against this suite",
}


@dataclass(frozen=True)
class PreflightTimings:
    """Seconds, measured once by the preflight; they calibrate the cost model. None: not measured."""

    import_s: float  # importing the simulation stack and resolving the tasks
    env_build_s: float  # building one env (cameras as the run renders them)
    reset_s: float  # one reset, settle steps included
    step_s: float  # one physics step, no camera
    render_s: float | None  # rendering one camera for one step, on top of the physics
    inference_s: float | None  # one policy query on the real observation (the controller's measure)


@dataclass(frozen=True)
class PreflightResult:
    passed: bool
    failure: PreflightFailure | None
    message: str  # what was checked, or what went wrong (one line, naming the task or package)
    elapsed_s: float
    timings: PreflightTimings | None  # None when it failed before measuring
    render_backend: str
    cameras: tuple[str, ...]  # the cameras rendered and checked for blank frames
    settled_tasks: tuple[str, ...]  # task keys whose scene was checked at rest
    reused: bool = False  # taken from an earlier run's identical preflight
    remedy: str | None = None  # what to do about the failure: its class's, or one naming the package

    def line(self) -> str:
        """The one line a user sees."""
        if self.passed:
            how = "reused from an identical earlier run" if self.reused else f"passed in {self.elapsed_s:.1f} s"
            return f"vla: preflight {how}: {self.message}"
        return f"preflight failed [{self.failure}]: {self.message}; remedy: {self.remedy}"

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["failure"] = None if self.failure is None else str(self.failure)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> PreflightResult:
        """The result :meth:`to_json` wrote; raises KeyError, TypeError or ValueError for anything else."""
        fields = {field.name: data[field.name] for field in dataclasses.fields(cls) if field.name in data}
        fields["failure"] = None if data["failure"] is None else PreflightFailure(data["failure"])
        fields["timings"] = None if data["timings"] is None else PreflightTimings(**data["timings"])
        fields["cameras"], fields["settled_tasks"] = tuple(data["cameras"]), tuple(data["settled_tasks"])
        result = cls(**fields)
        if not isinstance(result.passed, bool) or not isinstance(result.message, str):
            raise TypeError("passed must be a boolean and message a string")
        return result


def failed(
    failure: PreflightFailure,
    message: str,
    *,
    elapsed_s: float,
    render_backend: str,
    remedy: str | None = None,
    remedies: Mapping[str, str] | None = None,
) -> PreflightResult:
    """A failed preflight; ``remedy`` defaults to the suite's for the class (its ``remedies``), else the class's."""
    remedy = remedy or (remedies or {}).get(failure.value) or failure.remedy
    return PreflightResult(False, failure, message, elapsed_s, None, render_backend, (), (), remedy=remedy)
