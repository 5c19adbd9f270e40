"""Per-episode artefacts written beside report.json: trajectories (``.npz``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pytest_vla.report.layout import OutputLayout
from pytest_vla.report.schema import EpisodeId
from pytest_vla.rollout.loop import EpisodeOutcome


def save_trajectory(output: Path, episode: EpisodeId, outcome: EpisodeOutcome, action_dim: int, state_dim: int) -> Path:
    """``trajectories/<family>_task<k>_episode_<n>.npz`` with ``actions`` and ``states``, written atomically."""
    path = OutputLayout(output).trajectory(episode)
    path.parent.mkdir(parents=True, exist_ok=True)
    actions = np.asarray(outcome.actions, dtype=np.float64).reshape(-1, action_dim)
    states = np.asarray(outcome.states, dtype=np.float64).reshape(-1, state_dim)
    partial = path.with_name(f".{path.name}.tmp")
    try:
        with partial.open("wb") as stream:
            np.savez(stream, actions=actions, states=states)
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    return path
