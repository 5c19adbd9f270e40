"""The interface every benchmark suite implements (LIBERO, MetaWorld, a plugin's own)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from pytest_vla.report.schema import Stage, TaskSpec


@dataclass(frozen=True)
class Camera:
    """One camera a suite renders: its frame's size, and what the suite does to make the render upright."""

    height: int
    width: int
    orientation: str  # what the suite applies to the raw render, e.g. "rotated 180 degrees"


@dataclass(frozen=True)
class StateConvention:
    """Which variant of the suite's state a policy reads; models differ here, and a mismatch costs points silently.

    ``choices``: option -> choice among those the suite offers (:attr:`Suite.state_options`), as an
    export's state input names them; an option left out takes the suite's default. Empty: all defaults.
    """

    choices: tuple[tuple[str, str], ...] = ()  # sorted by option

    @classmethod
    def of(cls, choices: Mapping[str, str]) -> StateConvention:
        return cls(tuple(sorted(choices.items())))

    def choice(self, option: str, offered: Mapping[str, tuple[str, ...]]) -> str:
        """The choice for ``option``: the policy's, else the first of those ``offered`` (the suite's default)."""
        return dict(self.choices).get(option, offered[option][0])

    def to_json(self) -> dict[str, str]:
        return dict(self.choices)


@dataclass(frozen=True)
class GoalReading:
    """Privileged, read from the simulator without changing it: where an episode stands with its goal, now."""

    conditions: Mapping[str, bool]  # each condition of the goal, as the suite writes it -> whether it holds
    stages: Mapping[str, Stage]  # each object the goal acts on -> the stage it is at
    # Each object the goal does not name -> how far it is from where the reset left it, (3,) in metres;
    # None where the suite cannot tell which objects those are (no side effects are then read).
    bystanders: Mapping[str, np.ndarray] | None


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
    # Privileged: how far the task's goal is; None where the suite tells nothing of it.
    goal: GoalReading | None = None


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
    # The state's options a policy may choose (an export's state input names them), each option's choices default first.
    state_options: Mapping[str, tuple[str, ...]]
    action_dim: int
    cameras: Mapping[str, Camera]  # what exports may bind, by the name they bind it under
    max_episodes: int
    video_camera: str  # the camera --vla-video records, one of ``cameras``
    control_hz: float  # policy steps per simulated second: a video's frame rate
    default_seed: int  # the protocol's seed, when --vla-seed gives none
    idle_action: tuple[float, ...]  # an action that holds the robot still (the settle steps')
    # Whether an action's last value is its one gripper command, in [-1, 1] with negative open: an
    # export's gripper modes (binarize, invert) act on it, and only where it is.
    gripper_command_last: bool
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


def missing_members(suite: object) -> list[str]:
    """What :class:`Suite` requires that ``suite`` lacks, by name (its optional methods excepted)."""
    required = [*Suite.__annotations__, *(name for name in vars(Suite) if not name.startswith("_"))]
    return [name for name in dict.fromkeys(required) if name != "served_client" and not hasattr(suite, name)]


def state_choice_problem(state: StateConvention, suite: Suite) -> str | None:
    """Why ``state`` chooses what ``suite``'s state does not offer, in one clause; None when it does not."""
    for option, choice in state.choices:
        if option not in suite.state_options:
            offered = ", ".join(suite.state_options) or "none"
            return f"the {suite.name} suite's state has no option {option!r} (its options: {offered})"
        if choice not in suite.state_options[option]:
            offered = ", ".join(suite.state_options[option])
            return f"{option} is {choice!r}; the {suite.name} suite's choices for it are {offered}"
    return None
