"""The interface every benchmark suite implements (LIBERO, MetaWorld, a plugin's own)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol

import numpy as np

from pytest_vla.report.schema import TaskSpec

STATE_ORIGINS = ("observation", "controller")  # the default first, as every tuple of choices
QUATERNION_CONVENTIONS = ("robosuite", "antipodal")
# A state input's convention keys, as exports write them, and their choices; a suite offers some or none.
STATE_OPTIONS = MappingProxyType({"from": STATE_ORIGINS, "quaternion": QUATERNION_CONVENTIONS})


@dataclass(frozen=True)
class Camera:
    """One camera a suite renders: its frame's size, and what the suite does to make the render upright."""

    height: int
    width: int
    orientation: str  # what the suite applies to the raw render, e.g. "rotated 180 degrees"


@dataclass(frozen=True)
class StateConvention:
    """Which state a policy was trained on; models differ here, and a mismatch costs points silently.

    ``origin``: the observation's end-effector pose, or the arm controller's own estimate of it.
    ``quaternion``: axis-angle by robosuite's formula (angle in [0, 2 pi)), or after flipping the
    quaternion to w >= 0 (angle in [0, pi]).
    """

    origin: str = "observation"
    quaternion: str = "robosuite"


@dataclass
class Observation:
    """What the simulator shows the policy at one step, already in the protocol's conventions."""

    images: Mapping[str, np.ndarray]  # camera -> HxWx3 uint8, upright
    state: np.ndarray  # float32 proprioceptive vector
    raw: Mapping[str, Any] = field(default_factory=dict)  # the simulator's own observation, by key
    # Privileged: world positions (k, 3) of the objects the task's goal names, in goal order.
    objects_of_interest: np.ndarray = field(default_factory=lambda: np.zeros((0, 3)))
    # The arm controller's own end-effector estimate, where the suite has one: position (3,), orientation matrix (3, 3).
    controller_pose: tuple[np.ndarray, np.ndarray] | None = None


class ServedClient(Protocol):
    """A suite's side of a served policy under one protocol: what its reference client sends and executes.

    Made by :meth:`Suite.served_client` from the parameters the server announced.
    """

    cameras: tuple[str, ...]  # the cameras the requests carry: the only ones rendered
    state: StateConvention  # the convention of the state the requests carry
    warnings: tuple[str, ...]  # what the server asked for that this client does not do, one line each

    def observation(self, observation: Observation, task: TaskSpec) -> dict[str, Any]:
        """One request's payload for ``observation`` of an episode of ``task``."""

    def actions(self, reply: np.ndarray) -> np.ndarray:
        """The ``(K, action_dim)`` float64 actions to execute from a reply's actions (numeric and finite).

        Raise :class:`pytest_vla.errors.PolicyError` for a shape the reference client would not execute.
        """


class SuiteEnv(Protocol):
    """One task's environment, reused across that task's episodes within one process."""

    def reset(self, episode_index: int) -> Observation:
        """Put the env in the episode's initial state, ready for the first policy step."""

    def step(self, action: np.ndarray) -> tuple[Observation, bool]:
        """Apply one action; return the next observation and whether the task is done."""

    def close(self) -> None: ...


class Suite(Protocol):
    """A benchmark: which tasks exist, the protocol it is run under, and how to build an env.

    Suites register under a name through the ``pytest_vla.suites`` entry point (a callable, such
    as the class, that returns the suite) or the ``pytest_vla_make_suite`` hook.

    Two optional methods: a suite whose envs depend on files of this machine beyond installed
    packages (a config file, data sets) may define ``machine_facts() -> dict``: what they are now
    (paths, digests), so a cached preflight is not reused once they change (LIBERO's config file,
    for one). A suite that ships a scripted policy solving its tasks from privileged state may
    define ``demo_policy()``, which ``--vla-policy demo`` evaluates (a :class:`pytest_vla.policy.base.Policy`).
    """

    name: str
    state_dim: int
    state_options: Mapping[str, tuple[str, ...]]  # which STATE_OPTIONS its state offers, and their choices
    action_dim: int
    cameras: Mapping[str, Camera]  # what exports may bind, by the name they bind it under
    max_episodes: int
    video_camera: str  # the camera --vla-video records, one of ``cameras``
    control_hz: float  # policy steps per simulated second: a video's frame rate
    default_seed: int  # the protocol's seed, when --vla-seed gives none
    idle_action: tuple[float, ...]  # an action that holds the robot still (the settle steps')
    # Distribution -> the version window the protocol is defined on; the preflight refuses others.
    requirements: Mapping[str, str]
    # A preflight failure class (its value, "import-error") -> this suite's remedy, said instead of the generic one.
    remedies: Mapping[str, str]

    def resolve_tasks(self, selection: Sequence[str]) -> list[TaskSpec]:
        """Expand a ``--vla-tasks`` selection (or the default when empty); raise ``SuiteError``."""

    def protocol(self) -> dict[str, Any]:
        """The facts of the evaluation protocol and library versions, for the report."""

    def observation_shapes(self, task: TaskSpec) -> Mapping[str, tuple[int, ...]]:
        """The raw observation keys of ``task``'s env (images excluded) and their shapes."""

    def objects_of_interest(self, task: TaskSpec) -> tuple[str, ...]:
        """The names behind :attr:`Observation.objects_of_interest` for ``task``, in the same order."""

    def make_env(self, task: TaskSpec, cameras: Sequence[str], seed: int, state: StateConvention) -> SuiteEnv:
        """Build the env for ``task`` rendering only ``cameras``; raise ``EnvFailure``."""

    def served_client(self, protocol: str, params: Mapping[str, Any]) -> ServedClient:
        """This suite's client for ``protocol``'s servers (``vla-eval``, ``openpi``), as the server's ``params`` ask.

        Optional: a suite without it evaluates no served policy (refused at once, exit 4).

        ``params``: vla-eval's hello ``observation_params``, openpi's metadata. Raise ``SuiteError``
        for a protocol the suite has no client for, ``PolicyError`` for parameters it cannot honour.
        """
