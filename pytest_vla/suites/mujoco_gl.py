"""MuJoCo's GL backend for every MuJoCo suite: chosen before a simulator is imported; its errors told apart."""

from __future__ import annotations

import os
import re

# Whole words only: "egl" must not match "negligible".
_ABOUT_RENDERING = re.compile(r"\b(osmesa|egl|opengl|glfw|gl context|render\w*)\b", re.IGNORECASE)


def configure_rendering() -> str:
    """Choose the MuJoCo GL backend before a simulator is imported; OSMesa unless MUJOCO_GL says otherwise.

    robosuite and gymnasium's MuJoCo renderer bind the backend when first imported.
    """
    backend = os.environ.setdefault("MUJOCO_GL", "osmesa")
    if backend in ("osmesa", "egl"):
        os.environ.setdefault("PYOPENGL_PLATFORM", backend)
    return backend


def about_rendering(exc: BaseException) -> bool:
    """Whether a simulator exception comes from the GL side (a rendering failure, not a scene one)."""
    return _ABOUT_RENDERING.search(f"{type(exc).__module__} {type(exc).__name__} {exc}") is not None
