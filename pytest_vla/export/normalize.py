"""Normalization statistics and the (un)normalization formulas of exported policies.

The formulas and their float32 operation order are LeRobot's ``NormalizerProcessorStep`` and
``UnnormalizerProcessorStep`` (``lerobot/processor/normalize_processor.py``), the processors that
produce and consume the numbers of SmolVLA, pi0 and pi0.5 exports, so a binding reproduces them
bit for bit. Statistics come from a JSON file ``{"<key>": {"mean": [...], ...}}`` or a LeRobot
normalizer ``.safetensors`` file (flat ``"<key>.<stat>"`` tensors).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pytest_vla.errors import StatsError, read_json

# mode -> (stat for the low end or centre, stat for the high end or scale)
MODES = {"mean_std": ("mean", "std"), "min_max": ("min", "max"), "q01_q99": ("q01", "q99")}
EPS = np.float32(1e-8)  # LeRobot's default epsilon


@dataclass(frozen=True, eq=False)
class Normalization:
    """One feature's statistics under one mode, as float32 vectors."""

    mode: str
    key: str
    source: Path
    low: np.ndarray  # mean, min or q01
    high: np.ndarray  # std, max or q99

    @property
    def size(self) -> int:
        return int(self.low.shape[0])

    def normalize(self, values: np.ndarray) -> np.ndarray:
        x = np.asarray(values, dtype=np.float32)
        if self.mode == "mean_std":
            return (x - self.low) / (self.high + EPS)
        return np.float32(2) * (x - self.low) / self._range() - np.float32(1)

    def unnormalize(self, values: np.ndarray) -> np.ndarray:
        """The inverse, over the last axis; the first ``n`` statistics apply to ``n`` values (padding is dropped)."""
        x = np.asarray(values, dtype=np.float32)
        width = x.shape[-1]
        low, span = self.low[:width], self._range()[:width]
        if self.mode == "mean_std":
            return x * self.high[:width] + low
        if self.mode == "min_max":
            return (x + np.float32(1)) / np.float32(2) * span + low
        return (x + np.float32(1)) * span / np.float32(2) + low

    def _range(self) -> np.ndarray:
        span = self.high - self.low
        return np.where(span == 0, EPS, span).astype(np.float32)


def load_normalization(path: Path, key: str, mode: str) -> Normalization:
    """Read ``key``'s statistics for ``mode`` from a JSON or safetensors file."""
    if mode not in MODES:
        raise StatsError(f"unknown normalization mode {mode!r} (known: {', '.join(MODES)})")
    stats = read_stats(path)
    if key not in stats:
        raise StatsError(f"{path.name}: no statistics for {key!r} (has: {', '.join(sorted(stats)) or 'none'})")
    needed = MODES[mode]
    missing = [name for name in needed if name not in stats[key]]
    if missing:
        raise StatsError(f"{path.name}: {key!r} lacks {', '.join(missing)}, which mode {mode!r} needs")
    try:
        low, high = (np.asarray(stats[key][name], dtype=np.float32).reshape(-1) for name in needed)
    except (TypeError, ValueError):
        raise StatsError(f"{path.name}: {key!r} {needed[0]}/{needed[1]} must be lists of numbers") from None
    if low.shape != high.shape or not np.all(np.isfinite(low)) or not np.all(np.isfinite(high)):
        raise StatsError(f"{path.name}: {key!r} {needed[0]}/{needed[1]} must be finite vectors of one length")
    return Normalization(mode=mode, key=key, source=path, low=low, high=high)


def read_stats(path: Path) -> dict[str, dict[str, Any]]:
    """``{feature: {stat: values}}`` from a JSON file or a LeRobot normalizer safetensors file."""
    if not path.is_file():
        raise StatsError(f"statistics file {path.name!r} not found in {path.parent}")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.numpy import load_file

        try:
            flat = load_file(str(path))
        except (SafetensorError, OSError, ValueError) as exc:
            raise StatsError(f"{path.name}: not a readable safetensors file: {exc}") from None
        nested: dict[str, dict[str, Any]] = {}
        for name, tensor in flat.items():
            feature, _, stat = name.rpartition(".")
            nested.setdefault(feature, {})[stat] = tensor
        return nested
    raw = read_json(path, StatsError)
    if not isinstance(raw, dict) or not all(isinstance(value, dict) for value in raw.values()):
        raise StatsError(f"{path.name}: must map each feature to an object of statistics")
    return raw
