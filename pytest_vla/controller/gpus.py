"""Pinning xdist workers to GPUs: worker i gets visible GPU i mod n, for CUDA and for EGL rendering.

The controller assigns each worker's spec its device before the worker starts. xdist starts a
replacement for a crashed worker from the same spec, so the replacement keeps its slot.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from typing import Any


def visible_gpus() -> list[str]:
    """The GPUs this process may use: ``CUDA_VISIBLE_DEVICES`` when set, else what nvidia-smi lists."""
    if "CUDA_VISIBLE_DEVICES" in os.environ:
        devices = [device.strip() for device in os.environ["CUDA_VISIBLE_DEVICES"].split(",")]
        return [] if devices in ([""], ["-1"]) else [device for device in devices if device]
    return list(_nvidia_smi_indices().values())


def pin_workers(specs: Sequence[Any], devices: Sequence[str]) -> list[str]:
    """Give each local xdist worker spec one device (round robin); return the assignment, in worker order.

    Remote workers (``--tx ssh=...``) see other GPUs than this host's, so they are left alone.
    """
    local = [spec for spec in specs if getattr(spec, "popen", False)]
    egl_index = _nvidia_smi_indices() if any(not device.isdigit() for device in devices) else {}
    assignment = []
    for index, spec in enumerate(local):
        device = devices[index % len(devices)]
        spec.env["CUDA_VISIBLE_DEVICES"] = device
        # MuJoCo's EGL backend takes a device index (EGL's device order usually matches CUDA's);
        # a GPU named by UUID is looked up, and left to MuJoCo's default when it cannot be.
        egl_device = device if device.isdigit() else egl_index.get(device)
        if os.environ.get("MUJOCO_GL") == "egl" and "MUJOCO_EGL_DEVICE_ID" not in os.environ and egl_device:
            spec.env["MUJOCO_EGL_DEVICE_ID"] = egl_device
        assignment.append(device)
    return assignment


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
