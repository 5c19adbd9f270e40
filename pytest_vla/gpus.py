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
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        listed = subprocess.run(
            ["nvidia-smi", "--query-gpu=index", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in listed.splitlines() if line.strip()]


def pin_workers(specs: Sequence[Any], devices: Sequence[str]) -> list[str]:
    """Give each xdist worker spec one device (round robin); return the assignment, in worker order."""
    assignment = []
    for index, spec in enumerate(specs):
        device = devices[index % len(devices)]
        spec.env["CUDA_VISIBLE_DEVICES"] = device
        # MuJoCo's EGL backend picks its GPU by this index (EGL's device order usually matches CUDA's).
        if os.environ.get("MUJOCO_GL") == "egl" and "MUJOCO_EGL_DEVICE_ID" not in os.environ:
            spec.env["MUJOCO_EGL_DEVICE_ID"] = device
        assignment.append(device)
    return assignment
