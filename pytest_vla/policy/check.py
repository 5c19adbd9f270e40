"""The checks every policy gets before an episode: its own against the suite, and one query whose actions fit."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pytest_vla.errors import ExportError, PolicyError, one_line
from pytest_vla.policy.base import Policy
from pytest_vla.policy.feeds import synthetic_observation
from pytest_vla.report.reader import describe_policy
from pytest_vla.report.schema import ONNX_EXPORT, SERVED_POLICY
from pytest_vla.suites.base import Observation, Suite, TaskSpec


def query_once(policy: Policy, suite: Suite, task: TaskSpec, observation: Observation, source: str) -> np.ndarray:
    """The actions ``policy`` returns for ``observation`` (``source`` names it), in an episode of its own.

    Raises :class:`PolicyError` (``ExportError`` for an export) naming what is wrong with the
    answer: not ``(K, action_dim)`` with K >= 1, not finite, or no answer at all.
    """
    culprit = policy_culprit(policy)
    try:
        policy.begin_episode(0, task, 0)
        actions = np.asarray(policy.act(observation))
        policy.end_episode(False, 0)
    except (PolicyError, ExportError) as exc:
        raise type(exc)(f"{culprit}: on {source}: {str(exc).removeprefix(f'{culprit}: ')}") from None
    except Exception as exc:  # a conftest's policy or onnxruntime may raise anything
        raise PolicyError(f"{culprit}: fails on {source}: {one_line(exc)}") from None
    problem = action_problem(actions, suite.action_dim)
    if problem is not None:
        raise PolicyError(f"{culprit}: on {source}: {problem}")
    return actions


def policy_culprit(policy: Policy) -> str:
    """What a refusal names: the export's directory, the server's URL (a served policy's errors start with it), or
    the policy as its identity describes it."""
    identity = policy.identity()
    if identity.get("kind") == ONNX_EXPORT:
        return str(identity["export_dir"])
    return str(identity["url"]) if identity.get("kind") == SERVED_POLICY else describe_policy(identity)


def action_problem(actions: np.ndarray, action_dim: int) -> str | None:
    """Why ``actions`` are not something the env can execute: ``(K, action_dim)`` finite numbers, K >= 1."""
    if actions.dtype.kind not in "biuf":
        return f"the actions are of dtype {actions.dtype}, not numbers"
    if actions.ndim != 2 or actions.shape[0] < 1 or actions.shape[1] != action_dim:
        return f"the actions have shape {list(actions.shape)}; expected [K, {action_dim}] with K >= 1"
    if not np.all(np.isfinite(actions)):
        return "the actions hold non-finite values (NaN or inf)"
    return None


@dataclass(frozen=True)
class CheckedPolicy:
    warnings: list[str]  # worth telling, not worth stopping for (truncated instructions)
    steps_per_query: int  # actions the query returned for execution


def check_policy(policy: Policy, suite: Suite, tasks: Sequence[TaskSpec]) -> CheckedPolicy:
    """The policy's own checks against ``tasks``, its cameras, then one query on a synthetic observation of the first.

    Raises ``PolicyError`` or ``ExportError``.
    """
    warnings = policy.check(suite, tasks)
    unknown = [camera for camera in policy.cameras if camera not in suite.cameras]
    if unknown:
        raise PolicyError(
            f"{policy_culprit(policy)}: reads camera {unknown[0]!r}, which the {suite.name} suite does not have "
            f"(its cameras: {', '.join(suite.cameras)})"
        )
    observation = synthetic_observation(suite, tasks[0], policy.cameras)
    actions = query_once(policy, suite, tasks[0], observation, "a synthetic observation")
    return CheckedPolicy(warnings, actions.shape[0])
