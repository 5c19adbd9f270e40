"""openpi's LIBERO loop, in the pieces the end-to-end tests and benchmarks/throughput.py share."""

from __future__ import annotations

import numpy as np


def quat2axisangle(quat: np.ndarray) -> np.ndarray:
    """Copied in substance from openpi examples/libero/main.py (itself robosuite's formula)."""
    quat = quat.copy()
    quat[3] = min(max(quat[3], -1.0), 1.0)
    den = np.sqrt(1.0 - quat[3] * quat[3])
    if np.isclose(den, 0.0):
        return np.zeros(3)
    return (quat[:3] * 2.0 * np.arccos(quat[3])) / den
