"""The interface every policy implements: an ONNX export in-process, a served model, a conftest's own."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from pytest_vla.suites.base import Observation, StateConvention, Suite, TaskSpec


class Policy(Protocol):
    """What the rollout talks to, in each process that runs episodes (one per xdist worker).

    ``act`` returns the ``(K, action_dim)`` float64 actions the env executes before the policy is
    asked again (K >= 1); raise :class:`pytest_vla.errors.PolicyError` for anything that costs the
    episode (a bad output, a lost server): the episode becomes a harness error naming it.
    """

    cameras: tuple[str, ...]  # the suite's cameras it reads: the only ones rendered
    state: StateConvention  # the state convention it reads
    provider: str  # where inference runs, for each report row ("CPUExecutionProvider", "ws://host:8000 (vla-eval)")

    def identity(self) -> dict[str, Any]:
        """JSON for report.json's ``env.policy``: two runs whose identities are equal ran the same policy."""

    def check(self, suite: Suite, tasks: Sequence[TaskSpec]) -> list[str]:
        """Raise ``PolicyError`` or ``ExportError`` if it cannot act on ``tasks``; lines worth a warning."""

    def begin_episode(self, seed: int, task: TaskSpec, episode_index: int) -> None: ...

    def act(self, observation: Observation) -> np.ndarray: ...

    def end_episode(self, success: bool, n_steps: int) -> None: ...

    def close(self) -> None: ...
