"""MuJoCo's GL backend for LIBERO: chosen before robosuite is imported, checked before episodes run."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import warnings
from collections.abc import Iterator

RENDER_SIZE = (256, 256)
# Whole words only: "egl" must not match "negligible".
_ABOUT_RENDERING = re.compile(r"\b(osmesa|egl|opengl|glfw|gl context|render\w*)\b", re.IGNORECASE)


def configure_rendering() -> str:
    """Choose the MuJoCo GL backend before robosuite is imported; OSMesa unless MUJOCO_GL says otherwise.

    robosuite binds the backend at import time, so this must run before any LIBERO import.
    """
    backend = os.environ.setdefault("MUJOCO_GL", "osmesa")
    if backend in ("osmesa", "egl"):
        os.environ.setdefault("PYOPENGL_PLATFORM", backend)
    return backend


@contextlib.contextmanager
def quiet_import() -> Iterator[None]:
    """robosuite logs a warning about its private macro file (via a deprecated call) on import: noise."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        logging.disable(logging.WARNING)
        try:
            yield
        finally:
            logging.disable(logging.NOTSET)


def about_rendering(exc: BaseException) -> bool:
    """Whether a simulator exception comes from the GL side (a rendering failure, not a scene one)."""
    return _ABOUT_RENDERING.search(f"{type(exc).__module__} {type(exc).__name__} {exc}") is not None
