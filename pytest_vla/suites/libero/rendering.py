"""LIBERO's render size, and robosuite's import noise silenced."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator

RENDER_SIZE = (256, 256)


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
