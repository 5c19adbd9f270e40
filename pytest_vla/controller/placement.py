"""Where each process runs: its GPU (for CUDA and for EGL), its rendering backend, its share of the cores.

The controller decides before any worker starts (and before anything in it initialises CUDA) and
writes the decision into each xdist worker's spec environment. xdist starts a replacement for a
crashed worker from the same spec, so the replacement keeps its slot.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from pytest_vla.rollout.threads import THREAD_VARIABLES, available_cpus, threads_per_worker

# What one worker holds besides the model: a LIBERO env (about 2.1 GiB measured) and the interpreter.
WORKER_MEMORY_BYTES = int(2.5 * 2**30)
AUTO_WORKERS_KEY = pytest.StashKey[str]()  # how -n auto was sized, for the header
# What this module sets in a process's environment (the rendering backend, the GPU pin); the
# plugin restores them when the session ends.
PROCESS_VARIABLES = ("MUJOCO_GL", "PYOPENGL_PLATFORM", "CUDA_VISIBLE_DEVICES", "MUJOCO_EGL_DEVICE_ID")


def choose_render_backend(render: str | None) -> None:
    """Set MuJoCo's GL backend for this process and the workers it starts; the option wins over MUJOCO_GL."""
    if render is not None:
        os.environ["MUJOCO_GL"] = os.environ["PYOPENGL_PLATFORM"] = render


def visible_gpus() -> list[str]:
    """The GPUs this process may use: ``CUDA_VISIBLE_DEVICES`` when set, else what nvidia-smi lists."""
    if "CUDA_VISIBLE_DEVICES" in os.environ:
        devices = [device.strip() for device in os.environ["CUDA_VISIBLE_DEVICES"].split(",")]
        return [] if devices in ([""], ["-1"]) else [device for device in devices if device]
    return list(_nvidia_smi_indices().values())


def device_environment(device: str) -> dict[str, str]:
    """The variables that pin one process to ``device``, for CUDA and, under EGL, for rendering.

    MuJoCo's EGL backend takes a device index (EGL's order usually matches nvidia-smi's). A GPU
    named by UUID is looked up in nvidia-smi; one that cannot be is left to MuJoCo's default.
    ``MUJOCO_EGL_DEVICE_ID`` set by the user wins: only they know how their EGL numbers devices.
    """
    variables = {"CUDA_VISIBLE_DEVICES": device}
    if os.environ.get("MUJOCO_GL") == "egl" and "MUJOCO_EGL_DEVICE_ID" not in os.environ:
        egl_device = device if device.isdigit() else _nvidia_smi_indices().get(device)
        if egl_device:
            variables["MUJOCO_EGL_DEVICE_ID"] = egl_device
    return variables


def place_workers(specs: Sequence[Any], devices: Sequence[str]) -> list[str]:
    """Give each local xdist worker spec its GPU (round robin, when there are any) and its thread budget.

    Returns the GPU assignment in worker order. Remote workers (``--tx ssh=...``) run on other
    hosts, with other GPUs and cores: they are left alone.
    """
    local = [spec for spec in specs if getattr(spec, "popen", False)]
    threads = str(threads_per_worker(len(local)))
    assignment = []
    for index, spec in enumerate(local):
        for name in THREAD_VARIABLES:
            if name not in os.environ:  # the user's own setting wins
                spec.env[name] = threads
        if devices:
            device = devices[index % len(devices)]
            spec.env.update(device_environment(device))
            assignment.append(device)
    return assignment


def auto_worker_count(export: Path | None) -> tuple[int, str]:
    """``-n auto``: as many workers as there are cores and memory for, and how that was decided.

    Each worker holds an env and, evaluating an export, its own copy of the model, so the export's
    size counts too (a served policy's model lives in the server).
    """
    cpus = available_cpus()
    files = export.rglob("*") if export is not None else ()
    model_bytes = sum(path.stat().st_size for path in files if path.is_file())
    per_worker = WORKER_MEMORY_BYTES + model_bytes
    available = _available_memory()
    if available is None:
        return cpus, f"{cpus} workers ({cpus} cores; free memory unknown)"
    workers = max(1, min(cpus, available // per_worker))
    return workers, (
        f"{workers} workers ({cpus} cores, {available / 2**30:.1f} GiB available at "
        f"{per_worker / 2**30:.1f} GiB per worker)"
    )


def _available_memory() -> int | None:
    """MemAvailable from /proc/meminfo (Linux), in bytes."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


@functools.cache
def _nvidia_smi_indices() -> dict[str, str]:
    """uuid -> index of this host's GPUs, in nvidia-smi's order (empty without nvidia-smi)."""
    if shutil.which("nvidia-smi") is None:
        return {}
    try:
        listed = subprocess.run(
            ["nvidia-smi", "--query-gpu=index,uuid", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    pairs = [line.split(",") for line in listed.splitlines() if line.count(",") == 1]
    return {uuid.strip(): index.strip() for index, uuid in pairs}
