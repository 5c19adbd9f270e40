"""A vla-eval protocol v1 server as a policy: plain, as vla-eval's own benchmark client, or pytest-vla's extension.

Plain (any vla-eval model server): the suite's client (:meth:`Suite.served_client`) builds each
observation under the hello's ``observation_params`` and executes the one action each reply holds
(vla-eval 0.8.0: ``runners/sync_runner.py``, ``connection.py``, the benchmark's ``make_obs`` and
``step``). Extended (the server's hello has ``pytest_vla``): the suite's generic observation goes as
it is, and each reply is the chunk to execute. Either way the frames are numbered from 1 per
connection and each reply must echo its request's number.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from pytest_vla import __version__
from pytest_vla.errors import PolicyError, short_repr
from pytest_vla.policy.served.session import (
    ServedSession,
    announcement_of,
    reply_actions,
    server_text,
)
from pytest_vla.policy.served.transport import Endpoint, Socket
from pytest_vla.policy.wire import (
    PYTEST_VLA_EXTENSION,
    VLA_EVAL_PROTOCOL_VERSION,
    Frame,
    WireError,
    pack_frame,
    unpack_frame,
)
from pytest_vla.suites.base import (
    Observation,
    ServedClient,
    StateConvention,
    Suite,
    TaskSpec,
    state_choice_problem,
)


class VlaEvalPolicy(ServedSession):
    protocol = "vla-eval"
    extension: ExtendedClient | None  # pytest-vla's extension, when the first hello offered it

    def __init__(self, where: Endpoint, suite: Suite, *, query_timeout_s: float, ready_timeout_s: float) -> None:
        super().__init__(where, suite, query_timeout_s=query_timeout_s, ready_timeout_s=ready_timeout_s)
        self._episode: tuple[TaskSpec, float] | None = None  # the task, and when the episode began
        self._episode_start_seq: int | None = None  # its episode_start, which the server answers only on failure

    def _client_for(self, suite: Suite, hello: dict[str, Any]) -> ServedClient:
        # pytest-vla's extension when the server's hello has it; else the suite's client, as vla-eval's.
        self.extension = None if "pytest_vla" not in hello else ExtendedClient(hello["pytest_vla"], suite)
        if self.extension is not None:
            return self.extension
        if getattr(suite, "served_client", None) is None:
            raise PolicyError(
                f"a plain vla-eval server (its hello has no pytest_vla): the {suite.name} suite has no client for "
                "one, only for pytest-vla serve's extension"
            )
        return suite.served_client(self.protocol, _observation_params(hello))

    def _handshake(self, socket: Socket) -> dict[str, Any]:
        payload = {"harness_version": __version__, "protocol_version": VLA_EVAL_PROTOCOL_VERSION}
        socket.send(pack_frame(Frame("hello", {**payload, "pytest_vla": PYTEST_VLA_EXTENSION}, socket.next_seq())))
        deadline = time.monotonic() + self.query_timeout_s
        data = announcement_of(socket.recv(deadline, "hello reply", self.query_timeout_s), "the hello reply")
        try:
            frame = unpack_frame(data)
        except WireError as exc:
            raise PolicyError(
                f"another protocol: the reply to hello is no vla-eval frame ({exc}); an openpi server sends its "
                "metadata unasked (--vla-policy-protocol openpi)"
            ) from None
        if frame.type != "hello" or frame.seq != socket.seq:
            raise PolicyError(
                f"the reply to hello (seq {socket.seq}) is a frame of type {frame.type} with seq {frame.seq}"
            )
        version = frame.payload.get("protocol_version")
        if version != VLA_EVAL_PROTOCOL_VERSION:
            raise PolicyError(
                f"the server speaks vla-eval protocol version {short_repr(version)}; this client speaks "
                f"{VLA_EVAL_PROTOCOL_VERSION}"
            )
        return frame.payload

    def check(self, suite: Suite, tasks: Sequence[TaskSpec]) -> list[str]:
        if self.extension is not None:
            for task in tasks:
                missing = [key for key in self.extension.raw_keys if key not in suite.observation_shapes(task)]
                if missing:
                    raise PolicyError(
                        f"{self.where.url}: the server reads {missing}, which {task.key} does not observe"
                    )
        return super().check(suite, tasks)

    def begin_episode(self, seed: int, task: TaskSpec, episode_index: int) -> None:
        with self._blamed():
            self._episode = None
            self._reconnect_if_dropped()
            socket = self._live_socket()
            if self.extension is not None:
                payload: dict[str, Any] = {
                    "task": {"name": task.instruction, "key": task.key},
                    "pytest_vla": {"seed": seed, "task": dataclasses.asdict(task), "episode_index": episode_index},
                }
            else:  # vla-eval's sync runner sends the benchmark's task, as LIBERO's get_tasks() makes it
                task_info = {"name": task.instruction, "suite": task.family, "task_id": task.index}
                payload = {"task": {**task_info, "episode_idx": episode_index}}
            self._episode_start_seq = socket.next_seq()
            socket.send(pack_frame(Frame("episode_start", payload, self._episode_start_seq)))
            self._episode = (task, time.monotonic())

    def act(self, observation: Observation) -> np.ndarray:
        with self._blamed():
            if self._episode is None:
                raise PolicyError("begin_episode() did not succeed before this query")
            socket = self._live_socket()
            seq = socket.next_seq()
            socket.send(pack_frame(Frame("observation", self.client.observation(observation, self._episode[0]), seq)))
            reply = self._reply(socket, seq)
            # vla-eval's benchmarks read "actions", else "action".
            actions = reply.get("actions") if self.extension is not None else reply.get("actions", reply.get("action"))
            if actions is None:
                raise PolicyError(
                    f"the server's action reply has no actions (keys: {short_repr(sorted(map(str, reply)))})"
                )
            return self.client.actions(reply_actions(actions))

    def _reply(self, socket: Socket, seq: int) -> dict[str, Any]:
        """The payload of the action frame answering observation ``seq``; an error frame is raised."""
        deadline = time.monotonic() + self.query_timeout_s
        start_error = None
        while True:
            data = socket.recv(deadline, "reply to an observation", self.query_timeout_s)
            try:
                frame = unpack_frame(data)
            except WireError as exc:
                socket.drop()
                raise PolicyError(f"a malformed reply ({exc}): the connection is dropped") from None
            if frame.type == "error" and frame.seq == self._episode_start_seq:
                start_error = _error(frame)  # the observation's own reply comes next: read it, so none is left
                continue
            if frame.seq != seq or frame.type not in ("action", "error"):
                socket.drop()
                raise PolicyError(
                    f"a frame of type {frame.type} with seq {frame.seq} where the reply to observation {seq} belongs: "
                    "the connection is dropped"
                )
            self._episode_start_seq = None
            if start_error is not None:
                raise PolicyError(f"server error at the episode's start: {start_error}")
            if frame.type == "error":
                raise PolicyError(f"server error: {_error(frame)}")
            return frame.payload

    def end_episode(self, success: bool, n_steps: int) -> None:
        if self._episode is None or self._socket is None or not self._socket.is_open:
            return  # a server that lost the connection ended the episode itself
        metrics = {"metrics": {"success": bool(success)}, "steps": n_steps}
        elapsed = round(time.monotonic() - self._episode[1], 3)
        self._episode = None
        with contextlib.suppress(PolicyError):  # the episode is over either way; the next one reconnects
            self._socket.send(
                pack_frame(Frame("episode_end", {**metrics, "elapsed_sec": elapsed}, self._socket.next_seq()))
            )


class ExtendedClient:
    """pytest-vla's extension: the suite's observation as it is, and the server's chunk as it is."""

    warnings = ()

    def __init__(self, extension: Any, suite: Suite) -> None:
        def refuse(key: str, what: str) -> PolicyError:
            return PolicyError(f"the hello's pytest_vla.{key} is {short_repr(extension.get(key))}, not {what}")

        if not isinstance(extension, dict):
            raise PolicyError(f"the hello's pytest_vla is {short_repr(extension)}, not a map")
        if extension.get("version") != PYTEST_VLA_EXTENSION:
            raise refuse("version", f"{PYTEST_VLA_EXTENSION}, the version this client speaks")
        self.cameras = _names(extension.get("cameras"))
        self.raw_keys = _names(extension.get("raw_keys"))
        if self.cameras is None:
            raise refuse("cameras", "a list of distinct camera names")
        if self.raw_keys is None:
            raise refuse("raw_keys", "a list of distinct observation keys")
        state = extension.get("state")
        if not isinstance(state, dict) or not all(isinstance(item, str) for pair in state.items() for item in pair):
            raise refuse("state", "a map of state options to choices")
        self.state = StateConvention.of(state)
        problem = state_choice_problem(self.state, suite)
        if problem:
            raise refuse("state", f"a choice the suite offers: {problem}")
        if extension.get("action_dim") != suite.action_dim:
            raise refuse("action_dim", f"{suite.action_dim}, the {suite.name} suite's")
        self.action_dim = suite.action_dim

    def observation(self, observation: Observation, task: TaskSpec) -> dict[str, Any]:
        missing = [camera for camera in self.cameras if camera not in observation.images]
        missing += [key for key in self.raw_keys if key not in observation.raw]
        if missing:
            raise PolicyError(f"the observation lacks {missing}, which the server reads")
        return {
            "pytest_vla": {
                "images": {camera: observation.images[camera] for camera in self.cameras},
                "state": np.asarray(observation.state, dtype=np.float64),
                "raw": {key: np.asarray(observation.raw[key]) for key in self.raw_keys},
                "objects_of_interest": np.asarray(observation.objects_of_interest, dtype=np.float64),
            }
        }

    def actions(self, reply: np.ndarray) -> np.ndarray:
        if reply.ndim != 2 or reply.shape[0] < 1 or reply.shape[1] != self.action_dim:
            raise PolicyError(f"the server's actions have shape {list(reply.shape)}, not [K, {self.action_dim}]")
        return reply


def _observation_params(hello: dict[str, Any]) -> dict[str, Any]:
    params = hello.get("observation_params") or {}
    if not isinstance(params, dict):
        raise PolicyError(f"the hello's observation_params is {short_repr(params)}, not a map")
    return params


def _names(value: Any) -> tuple[str, ...] | None:
    if not isinstance(value, list) or not all(isinstance(name, str) for name in value) or len(set(value)) != len(value):
        return None
    return tuple(value)


def _error(frame: Frame) -> str:
    message = frame.payload.get("error")
    return server_text(message if isinstance(message, str) else short_repr(frame.payload, 200))
