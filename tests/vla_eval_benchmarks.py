"""A vla-eval benchmark for ``pytest-vla serve``'s tests, run by vla-eval's own orchestrator (``module:Class``)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from vla_eval.benchmarks.base import StepBenchmark, StepResult

TOY_TASKS = ("put the bowl on the plate", "open the drawer")


def toy_observation(task_id: int, episode_idx: int, step: int) -> tuple[np.ndarray, np.ndarray]:
    """The agentview image and 8-D state a toy episode shows at ``step`` (the test recomputes them)."""
    rng = np.random.default_rng([task_id, episode_idx, step])
    return rng.integers(0, 256, (256, 256, 3), dtype=np.uint8), rng.normal(size=8)


class ToyBenchmark(StepBenchmark):
    """LIBERO-shaped observations without a simulator; an episode succeeds after ``steps`` 7-D actions.

    What it was built with (the hello reply's observation_params) and every action it got are kept
    on the class, for the test in the same process to read.
    """

    built_with: ClassVar[list[dict[str, Any]]] = []
    actions: ClassVar[list[tuple[int, int, np.ndarray]]] = []  # task_id, episode_idx, action

    def __init__(
        self, send_state: bool = False, send_wrist_image: bool = False, quat_no_antipodal: bool = False, steps: int = 5
    ) -> None:
        super().__init__()
        self.send_state = send_state
        self.steps = steps
        ToyBenchmark.built_with.append(
            {"send_state": send_state, "send_wrist_image": send_wrist_image, "quat_no_antipodal": quat_no_antipodal}
        )

    def get_tasks(self) -> list[dict[str, Any]]:
        return [{"name": name, "suite": "toy", "task_id": index} for index, name in enumerate(TOY_TASKS)]

    def reset(self, task: dict[str, Any]) -> Any:
        self._episode = (task["task_id"], task.get("episode_idx", 0))
        self._step = 0
        return toy_observation(*self._episode, 0)

    def step(self, action: dict[str, Any]) -> StepResult:
        values = np.asarray(action["actions"])
        ToyBenchmark.actions.append((*self._episode, values))
        self._step += 1
        done = values.shape == (7,) and bool(np.all(np.isfinite(values))) and self._step >= self.steps
        return StepResult(obs=toy_observation(*self._episode, self._step), reward=0.0, done=done, info={})

    def make_obs(self, raw_obs: Any, task: dict[str, Any]) -> dict[str, Any]:
        image, state = raw_obs
        observation: dict[str, Any] = {"images": {"agentview": image}, "task_description": task["name"]}
        if self.send_state:
            observation["states"] = state
        return observation

    def get_step_result(self, step_result: StepResult) -> dict[str, Any]:
        return {"success": step_result.done}

    def get_metadata(self) -> dict[str, Any]:
        return {"max_steps": self.steps + 1}
