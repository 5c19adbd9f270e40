"""Served policies against the real upstream servers: vla-eval's PredictModelServer and openpi's websocket server.

The observations are LIBERO-like ones made without the simulator (tests/served_servers.py); what
the clients send is compared with what vla-eval's and openpi's own clients compute from them.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from vla_eval import serve_background

from pytest_vla.errors import PolicyError, SuiteError
from pytest_vla.policy.base import Policy
from pytest_vla.policy.served import connect_policy
from pytest_vla.policy.wire import Frame, pack_frame, pack_openpi, unpack_frame
from pytest_vla.report.schema import TaskSpec
from pytest_vla.suites.base import StateConvention
from pytest_vla.suites.libero import LiberoSuite
from tests.served_servers import (
    VLA_EVAL_HELLO,
    ScriptedOpenpiPolicy,
    ScriptedServer,
    answer_hello,
    free_port,
    hostile_server,
    libero_observation,
    openpi_server,
)

TASK = TaskSpec("libero_object", 3, "pick up the ketchup and place it in the basket", 280)
SUITE = LiberoSuite()
TIMEOUTS = {"query_timeout_s": 5.0, "ready_timeout_s": 5.0}


def connect(url: str, protocol: str = "vla-eval", **timeouts: float) -> Policy:
    return connect_policy(url, protocol, SUITE, **{**TIMEOUTS, **timeouts})


def run_steps(policy: Policy, n_steps: int, episode_index: int = 0) -> list[np.ndarray]:
    """The actions executed over ``n_steps``, queried as the rollout queries: when the last chunk is used up."""
    policy.begin_episode(7, TASK, episode_index)
    chunk: deque[np.ndarray] = deque()
    executed = []
    for step in range(n_steps):
        if not chunk:
            chunk.extend(policy.act(libero_observation(step)))
        executed.append(chunk.popleft())
    return executed


@pytest.fixture(scope="module")
def libero_benchmark() -> Any:
    """vla-eval's LIBERO benchmark class, imported without the render variables it sets in os.environ."""
    saved = {name: os.environ.get(name) for name in ("EGL_PLATFORM", "PYOPENGL_PLATFORM")}
    from vla_eval.benchmarks.libero.benchmark import LIBEROBenchmark

    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    return LIBEROBenchmark


class _Controller:
    def __init__(self, position: np.ndarray, orientation: np.ndarray) -> None:
        self.ee_pos, self.ee_ori_mat = position, orientation


class _Robot:
    def __init__(self, controller: _Controller) -> None:
        self.controller = controller


class _StubEnv:
    """What LIBEROBenchmark.make_obs and step read of robosuite's env: the controller, and step's argument."""

    def __init__(self, observation: Any) -> None:
        self.robots = [_Robot(_Controller(*observation.controller_pose))]
        self.raw = observation.raw
        self.stepped: list[list[float]] = []

    def step(self, action: list[float]) -> tuple[dict[str, Any], float, bool, dict[str, Any]]:
        self.stepped.append(action)
        return self.raw, 0.0, False, {}


def vla_eval_benchmark(benchmark_class: Any, params: dict[str, Any], observation: Any) -> Any:
    """vla-eval's LIBEROBenchmark on a stub of robosuite's env that shows ``observation``."""
    from vla_eval.recording import NullEpisodeRecorder

    benchmark = benchmark_class(**params)
    benchmark._env, benchmark._recorder = _StubEnv(observation), NullEpisodeRecorder()
    return benchmark


def vla_eval_make_obs(benchmark_class: Any, params: dict[str, Any], observation: Any) -> dict[str, Any]:
    return vla_eval_benchmark(benchmark_class, params, observation).make_obs(
        observation.raw, {"name": TASK.instruction}
    )


def vla_eval_executes(benchmark_class: Any, reply: dict[str, Any]) -> list[float]:
    """What vla-eval's LIBERO step() passes to env.step for ``reply``."""
    benchmark = vla_eval_benchmark(benchmark_class, {}, libero_observation())
    benchmark.step(reply)
    return benchmark._env.stepped[0]


def assert_same(ours: Any, theirs: Any, where: str = "") -> None:
    """Equal values of equal types and dtypes, nested."""
    assert type(ours) is type(theirs), where
    if isinstance(theirs, dict):
        assert list(ours) == list(theirs), where
        for key in theirs:
            assert_same(ours[key], theirs[key], f"{where}.{key}")
    elif isinstance(theirs, np.ndarray):
        assert (ours.dtype, ours.shape) == (theirs.dtype, theirs.shape), where
        np.testing.assert_array_equal(ours, theirs, err_msg=where)
    else:
        assert ours == theirs, where


GRIPPERS = (-0.4, 0.0, 0.4, -1e-9)  # prediction k's gripper is GRIPPERS[k - 1]


def gripping(k: int) -> np.ndarray:
    return np.array([0.1, -0.2, 0.3, 0.0, 0.0, 1e-3, GRIPPERS[(k - 1) % 4]], dtype=np.float32)


# -- vla-eval: the plain protocol, as vla-eval's LIBERO client -------------------------------------------------------


def test_a_plain_vla_eval_server_gets_what_vla_eval_sends_and_its_actions_run_as_there(libero_benchmark) -> None:
    server = ScriptedServer(actions=gripping)
    with serve_background(server, host="127.0.0.1", port=0) as handle:
        policy = connect(handle.url)
        assert (policy.cameras, policy.state) == (("agentview",), StateConvention.of({"quaternion": "antipodal"}))
        assert policy.provider == f"{handle.url} (vla-eval)"
        assert policy.check(SUITE, [TASK]) == []
        executed = run_steps(policy, 4, episode_index=2)
        policy.end_episode(True, 4)
        identity = policy.identity()
        policy.close()
        time.sleep(0.2)  # the server reads episode_end after the client sent it
    assert server.episode_starts == [
        {"task": {"name": TASK.instruction, "suite": "libero_object", "task_id": 3, "episode_idx": 2}}
    ]
    assert server.episode_ends[0]["metrics"] == {"success": True} and server.episode_ends[0]["steps"] == 4
    assert 0 <= server.episode_ends[0]["elapsed_sec"] < 5
    assert len(server.observations) == 4  # one action per observation
    for step, sent in enumerate(server.observations):
        assert_same(sent, vla_eval_make_obs(libero_benchmark, {}, libero_observation(step)))
        np.testing.assert_array_equal(sent["images"]["agentview"], libero_observation(step).images["agentview"])
    for k, action in enumerate(executed, start=1):
        assert action.dtype == np.float64
        assert action.tolist() == vla_eval_executes(libero_benchmark, {"actions": gripping(k)})
    assert [action[-1] for action in executed] == [-1.0, 1.0, 1.0, -1.0]
    assert identity == {
        "kind": "served",
        "protocol": "vla-eval",
        "url": handle.url,
        "server": {
            "harness_version": "0.8.0",
            "protocol_version": 1,
            "model_server": "ScriptedServer",
            "capabilities": {},
        },
    }
    json.dumps(identity)


@pytest.mark.parametrize(
    "params",
    [
        {"send_wrist_image": True},
        {"send_state": True},
        {"send_wrist_image": True, "send_state": True},
        {"send_state": True, "quat_no_antipodal": True},
    ],
)
def test_observation_params_choose_the_cameras_and_states_as_in_vla_eval(libero_benchmark, params) -> None:
    server = ScriptedServer(observation_params=params)
    with serve_background(server, host="127.0.0.1", port=0) as handle:
        policy = connect(handle.url)
        run_steps(policy, 2)
        policy.close()
    wrist = params.get("send_wrist_image", False)
    assert policy.cameras == (("agentview", "wrist") if wrist else ("agentview",))
    assert policy.state.to_json()["quaternion"] == ("robosuite" if params.get("quat_no_antipodal") else "antipodal")
    for step, sent in enumerate(server.observations):
        # Bit for bit: states is float64 around vla-eval's float32 axis-angle; controller_states float32.
        assert_same(sent, vla_eval_make_obs(libero_benchmark, params, libero_observation(step)))
    assert ("states" in server.observations[0]) == params.get("send_state", False)


def test_an_error_frame_fails_that_query_and_the_connection_serves_the_next() -> None:
    server = ScriptedServer(fail_at=(2,))
    with serve_background(server, host="127.0.0.1", port=0) as handle:
        policy = connect(handle.url)
        policy.begin_episode(7, TASK, 0)
        np.testing.assert_array_equal(policy.act(libero_observation()), [[1.0] * 6 + [1.0]])
        with pytest.raises(PolicyError) as error:
            policy.act(libero_observation())
        assert str(error.value) == (f"{handle.url}: server error: observation_failed: ValueError: prediction 2 fails")
        np.testing.assert_array_equal(policy.act(libero_observation()), [[3.0] * 6 + [1.0]])
        policy.close()
    assert len(set(server.sessions)) == 1  # one connection throughout


def test_a_reply_past_the_timeout_drops_the_connection_and_the_next_episode_reconnects() -> None:
    server = ScriptedServer(stall_at=(2,), stall_s=1.0)
    with serve_background(server, host="127.0.0.1", port=0) as handle:
        policy = connect(handle.url, query_timeout_s=0.3)
        policy.begin_episode(7, TASK, 0)
        policy.act(libero_observation())
        started = time.monotonic()
        with pytest.raises(PolicyError, match=r": no reply to an observation within 0\.3 s: the connection is dropped"):
            policy.act(libero_observation())
        assert time.monotonic() - started < 0.9
        with pytest.raises(PolicyError, match="the connection was dropped earlier in this episode"):
            policy.act(libero_observation())
        time.sleep(started + 1.1 - time.monotonic())  # vla-eval predicts one at a time: let prediction 2 end
        policy.begin_episode(7, TASK, 1)
        # Prediction 2's late answer is never taken for this query's: it is prediction 3's.
        np.testing.assert_array_equal(policy.act(libero_observation())[0, :6], [3.0] * 6)
        policy.close()
    assert len(set(server.sessions)) == 2


def test_a_server_killed_mid_episode_is_a_policy_error_and_the_next_episode_says_it_is_gone() -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.served_servers"],
        stdout=subprocess.PIPE,
        cwd=Path(__file__).parent.parent,
        text=True,
    )
    try:
        url = f"ws://127.0.0.1:{int(process.stdout.readline())}"
        policy = connect(url, ready_timeout_s=0.5)
        policy.begin_episode(7, TASK, 0)
        policy.act(libero_observation())
        process.kill()
        process.wait()
        with pytest.raises(
            PolicyError, match=f"^{url}: the server closed the connection( while [a-z ]+)? \\(without a close frame\\)$"
        ):
            policy.act(libero_observation())
        policy.end_episode(False, 1)  # nothing to tell a server that is gone
        with pytest.raises(PolicyError, match=f"^{url}: unreachable: nothing accepted a connection on .* within 0.5 s"):
            policy.begin_episode(7, TASK, 1)
    finally:
        process.kill()
        process.wait()


def test_a_chunking_server_answers_one_action_per_observation_from_its_chunk() -> None:
    chunk = lambda k: np.array([[k + row / 10] * 7 for row in range(5)], dtype=np.float32)  # noqa: E731
    server = ScriptedServer(actions=chunk, chunk_size=3)
    with serve_background(server, host="127.0.0.1", port=0) as handle:
        policy = connect(handle.url)
        executed = run_steps(policy, 7)
        policy.close()
    np.testing.assert_allclose(
        [action[0] for action in executed], [1.0, 1.1, 1.2, 2.0, 2.1, 2.2, 3.0], rtol=1e-6
    )  # float32 on the wire
    assert len(server.observations) == 3  # predictions; the other observations were answered from the chunk


def test_a_server_that_answers_chunks_without_chunk_size_is_refused_as_vla_eval_refuses_it() -> None:
    server = ScriptedServer(actions=lambda k: np.zeros((4, 7), dtype=np.float32))
    with serve_background(server, host="127.0.0.1", port=0) as handle:
        policy = connect(handle.url)
        policy.begin_episode(7, TASK, 0)
        with pytest.raises(PolicyError) as error:
            policy.act(libero_observation())
        policy.close()
    assert str(error.value) == (
        f"{handle.url}: the server's action has shape [4, 7]: vla-eval's LIBERO client executes one 7-D action "
        "per observation, shape [7]"
    )


def test_a_server_whose_hello_changed_while_disconnected_is_refused() -> None:
    server = ScriptedServer()
    with serve_background(server, host="127.0.0.1", port=0) as handle:
        policy = connect(handle.url)
        policy.begin_episode(7, TASK, 0)
        policy._socket.drop()  # as a timeout does
        policy.begin_episode(7, TASK, 1)  # the same server: reconnected
        policy._socket.drop()
        server.observation_params = {"send_wrist_image": True}
        with pytest.raises(PolicyError) as error:
            policy.begin_episode(7, TASK, 2)
        policy.close()
    assert str(error.value) == (
        f"{handle.url}: the server changed since the run's first connection: its announcement differs in "
        "['observation_params']"
    )


def test_observation_params_the_client_cannot_honour_are_refused_or_warned_about() -> None:
    oft_like = {"env_seed": 0, "quat_no_antipodal": True, "send_state": True, "camera_res": 224}
    with serve_background(ScriptedServer(observation_params=oft_like), host="127.0.0.1", port=0) as handle:
        policy = connect(handle.url)
        assert policy.check(SUITE, [TASK]) == [
            "observation_params.env_seed=0 is not applied: the env follows pytest-vla's protocol",
            "observation_params.'camera_res' is no parameter of vla-eval's LIBERO client: ignored, as there",
        ]
        policy.close()
    for params, refusal in [
        ({"absolute_action": True}, "observation_params.absolute_action is true: the server's actions are absolute"),
        ({"send_state": "yes"}, "observation_params.send_state is 'yes', not true or false"),
    ]:
        server = ScriptedServer(observation_params=params)
        with serve_background(server, host="127.0.0.1", port=0) as handle, pytest.raises(PolicyError) as error:
            connect(handle.url)
        assert str(error.value).startswith(f"{handle.url}: {refusal}")


# -- vla-eval: hostile servers ----------------------------------------------------------------------------------------


def replying(*replies: Any, hello: dict[str, Any] = VLA_EVAL_HELLO) -> Any:
    """A vla-eval server that answers hello, then each observation with the next of ``replies``.

    A reply is the action payload, or a function of the observation frame that returns the message to send.
    """

    def handler(connection: Any) -> None:
        answer_hello(connection, hello)
        pending = list(replies)
        while pending:
            frame = unpack_frame(connection.recv())
            if frame.type == "observation":
                reply = pending.pop(0)
                connection.send(reply(frame) if callable(reply) else pack_frame(Frame("action", reply, frame.seq)))
        connection.recv()

    return handler


ACTION = np.arange(7, dtype=np.float32)


@pytest.mark.parametrize(
    ("reply", "refusal"),
    [
        ({"actions": "left"}, "the server's actions are a str, not an array"),
        ({"action_chunk": ACTION}, "the server's action reply has no actions (keys: ['action_chunk'])"),
        ({"actions": [1.0, "2"]}, "the server's actions are a list, not an array"),
        ({"actions": np.arange(7) > 3}, "the server's actions are of dtype bool, not numbers"),
        ({"actions": np.array([0, 0, np.nan, 0, 0, np.inf, 1])}, "the server's actions hold 2 non-finite values"),
        ({"actions": np.zeros(6)}, "the server's action has shape [6]: vla-eval's LIBERO client executes"),
        ({"actions": np.zeros((1, 7))}, "the server's action has shape [1, 7]"),
        (
            lambda f: pack_frame(Frame("action", {"actions": ACTION}, f.seq + 1)),
            "a frame of type action with seq 4 where the reply to observation 3 belongs: the connection is dropped",
        ),
        (
            lambda f: pack_frame(Frame("hello", {}, f.seq)),
            "a frame of type hello with seq 3 where the reply to observation 3",
        ),
        (lambda f: b"\xc1", "a malformed reply (not msgpack"),
        (lambda f: "Traceback: boom", "a malformed reply (a text frame where a binary one belongs"),
        (
            lambda f: pack_frame(Frame("error", {"error": "\x1b[2Jgone\nnow"}, f.seq)),
            r"server error: \\x1b\[2Jgone now$",
        ),
    ],
)
def test_hostile_replies_are_refused_in_one_line(reply: Any, refusal: str) -> None:
    with hostile_server(replying(reply)) as url:
        policy = connect(url)
        policy.begin_episode(7, TASK, 0)
        with pytest.raises(PolicyError) as error:
            policy.act(libero_observation())
        policy.close()
    message = str(error.value)
    assert message.startswith(f"{url}: ") and "\n" not in message
    assert re.search(refusal if refusal.endswith("$") else re.escape(refusal), message), message


def test_a_list_of_seven_numbers_is_an_action_as_vla_eval_takes_it() -> None:
    with hostile_server(replying({"action": [0.5, 0, 0, 0, 0, 0, -0.1]})) as url:
        policy = connect(url)
        policy.begin_episode(7, TASK, 0)
        np.testing.assert_array_equal(policy.act(libero_observation()), [[0.5, 0, 0, 0, 0, 0, -1.0]])
        policy.close()


def test_an_episode_start_the_server_refused_fails_the_first_query_and_leaves_no_reply_unread() -> None:
    def handler(connection: Any) -> None:
        answer_hello(connection, VLA_EVAL_HELLO)
        for _ in range(2):
            start = unpack_frame(connection.recv())
            connection.send(pack_frame(Frame("error", {"error": "episode_start_failed: KeyError: 'task'"}, start.seq)))
            observation = unpack_frame(connection.recv())
            connection.send(pack_frame(Frame("action", {"actions": ACTION}, observation.seq)))
        connection.recv()

    with hostile_server(handler) as url:
        policy = connect(url)
        for episode in range(2):  # the same connection: the first episode's action reply was read
            policy.begin_episode(7, TASK, episode)
            with pytest.raises(PolicyError) as error:
                policy.act(libero_observation())
            assert (
                str(error.value)
                == f"{url}: server error at the episode's start: episode_start_failed: KeyError: 'task'"
            )
        policy.close()


@pytest.mark.parametrize(
    ("hello", "refusal"),
    [
        (
            {**VLA_EVAL_HELLO, "protocol_version": 2},
            "the server speaks vla-eval protocol version 2; this client speaks 1",
        ),
        ({**VLA_EVAL_HELLO, "observation_params": [1]}, "the hello's observation_params is [1], not a map"),
        ({**VLA_EVAL_HELLO, "pytest_vla": {"version": 3}}, "the hello's pytest_vla.version is 3, not 2"),
    ],
)
def test_a_hello_of_another_version_is_refused(hello: dict[str, Any], refusal: str) -> None:
    with hostile_server(replying(hello=hello)) as url, pytest.raises(PolicyError) as error:
        connect(url)
    assert str(error.value).startswith(f"{url}: {refusal}")


# -- vla-eval: pytest-vla's extension ---------------------------------------------------------------------------------

EXTENSION = {
    "version": 2,
    "cameras": ["wrist"],
    "state": {"from": "controller", "quaternion": "antipodal"},
    "raw_keys": ["robot0_joint_pos"],
    "objects_of_interest": True,
    "action_dim": 7,
    "policy": {"kind": "onnx-export", "export_files": [{"path": "model.onnx", "sha256": "ab" * 32}]},
    "max_batch_size": 4,
    "max_wait_ms": 5.0,
}


def test_a_pytest_vla_server_gets_the_generic_observation_and_its_chunks_run_as_they_are() -> None:
    received: list[Frame] = []
    chunk = np.random.default_rng(0).normal(size=(3, 7))

    def handler(connection: Any) -> None:
        hello = unpack_frame(connection.recv())
        received.append(hello)
        reply = {**VLA_EVAL_HELLO, "model_server": "pytest-vla serve", "pytest_vla": EXTENSION}
        connection.send(pack_frame(Frame("hello", reply, hello.seq)))
        while True:
            frame = unpack_frame(connection.recv())
            received.append(frame)
            if frame.type == "observation":
                connection.send(pack_frame(Frame("action", {"actions": chunk}, frame.seq)))

    with hostile_server(handler) as url:
        policy = connect(url)
        assert (policy.cameras, policy.state) == (
            ("wrist",),
            StateConvention.of({"from": "controller", "quaternion": "antipodal"}),
        )
        policy.begin_episode(7, TASK, 4)
        observation = libero_observation()
        actions = policy.act(observation)
        policy.end_episode(False, 3)
        identity = policy.identity()
        policy.close()
        time.sleep(0.1)
    assert actions.dtype == np.float64 and actions.tobytes() == chunk.tobytes()  # bit for bit
    hello, start, sent, end = received
    assert hello.payload["pytest_vla"] == 2 and hello.payload["protocol_version"] == 1 and hello.seq == 1
    assert start.payload == {
        "task": {"name": TASK.instruction, "key": "libero_object:3"},
        "pytest_vla": {
            "seed": 7,
            "task": {"family": "libero_object", "index": 3, "instruction": TASK.instruction, "max_steps": 280,
                     "clean_task": None, "name": None},
            "episode_index": 4,
        },
    }  # fmt: skip
    assert list(sent.payload) == ["pytest_vla"]
    generic = sent.payload["pytest_vla"]
    assert list(generic["images"]) == ["wrist"]
    np.testing.assert_array_equal(generic["images"]["wrist"], observation.images["wrist"])
    assert generic["state"].dtype == np.float64 and generic["state"].tobytes() == observation.state.tobytes()
    assert list(generic["raw"]) == ["robot0_joint_pos"]
    np.testing.assert_array_equal(generic["raw"]["robot0_joint_pos"], observation.raw["robot0_joint_pos"])
    np.testing.assert_array_equal(generic["objects_of_interest"], observation.objects_of_interest)
    assert (start.seq, sent.seq, end.seq) == (2, 3, 4)
    assert end.type == "episode_end" and end.payload["metrics"] == {"success": False} and end.payload["steps"] == 3
    assert identity["server"]["pytest_vla"] == EXTENSION


@pytest.mark.parametrize(
    ("extension", "refusal"),
    [
        ({**EXTENSION, "action_dim": 14}, "the hello's pytest_vla.action_dim is 14, not 7, the libero suite's"),
        ({**EXTENSION, "cameras": "wrist"}, "the hello's pytest_vla.cameras is 'wrist', not a list of distinct camera"),
        (
            {**EXTENSION, "state": {"from": "joint"}},
            "the hello's pytest_vla.state is {'from': 'joint'}, not a choice the",
        ),
        (
            {**EXTENSION, "state": {"from": 1}},
            "the hello's pytest_vla.state is {'from': 1}, not a map of state options",
        ),
        ([1], "the hello's pytest_vla is [1], not a map"),
    ],
)
def test_a_pytest_vla_hello_that_does_not_fit_is_refused(extension: Any, refusal: str) -> None:
    hello = {**VLA_EVAL_HELLO, "pytest_vla": extension}
    with hostile_server(replying(hello=hello)) as url, pytest.raises(PolicyError) as error:
        connect(url)
    assert str(error.value).startswith(f"{url}: {refusal}")


def test_a_pytest_vla_reply_of_another_shape_is_refused() -> None:
    hello = {**VLA_EVAL_HELLO, "pytest_vla": EXTENSION}
    with hostile_server(replying({"actions": np.zeros(7)}, hello=hello)) as url:
        policy = connect(url)
        policy.begin_episode(7, TASK, 0)
        with pytest.raises(PolicyError, match=r": the server's actions have shape \[7\], not \[K, 7\]$"):
            policy.act(libero_observation())
        policy.close()


# -- openpi -----------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("horizon", [10, 50])
def test_an_openpi_server_gets_what_openpi_sends_and_is_asked_again_every_5_steps(horizon: int) -> None:
    from openpi_client import image_tools

    from pytest_vla.suites.libero.env import axis_angle

    policy_server = ScriptedOpenpiPolicy(horizon)
    with openpi_server(policy_server, metadata={"reset_pose": np.array([0.0, -1.5]), "name": "pi05"}) as url:
        policy = connect(url, "openpi")
        assert (policy.cameras, policy.state) == (("agentview", "wrist"), StateConvention())
        assert policy.identity()["server"] == {"reset_pose": [0.0, -1.5], "name": "pi05"}
        json.dumps(policy.identity())
        executed = run_steps(policy, 12)
        policy.end_episode(False, 12)
        policy.close()
    assert len(policy_server.requests) == 3  # steps 0, 5, 10
    # The first 5 rows of each chunk, gripper unchanged.
    expected = [k + row / 100 for k in (1, 2, 3) for row in range(5)][:12]
    np.testing.assert_array_equal([action[-1] for action in executed], expected)
    for request, step in zip(policy_server.requests, (0, 5, 10), strict=True):
        observation = libero_observation(step)
        assert list(request) == ["observation/image", "observation/wrist_image", "observation/state", "prompt"]
        for key, camera in [("observation/image", "agentview"), ("observation/wrist_image", "wrist")]:
            upright = np.ascontiguousarray(observation.images[camera])
            theirs = image_tools.convert_to_uint8(image_tools.resize_with_pad(upright, 224, 224))
            assert request[key].dtype == np.uint8 and request[key].shape == (224, 224, 3)
            np.testing.assert_array_equal(request[key], theirs)
        raw = observation.raw
        state = np.concatenate(
            [raw["robot0_eef_pos"], axis_angle(raw["robot0_eef_quat"], "robosuite"), raw["robot0_gripper_qpos"]]
        )
        assert request["observation/state"].dtype == np.float64
        assert request["observation/state"].tobytes() == state.tobytes()
        assert request["prompt"] == TASK.instruction


def test_openpis_resize_is_replicated_for_any_shape() -> None:
    from openpi_client import image_tools

    from pytest_vla.suites.libero.served import resize_with_pad

    rng = np.random.default_rng(1)
    for shape in [(256, 256, 3), (480, 640, 3), (100, 60, 3), (224, 224, 3), (7, 300, 3), (100, 300, 3)]:
        image = rng.integers(0, 256, shape, dtype=np.uint8)
        np.testing.assert_array_equal(resize_with_pad(image, 224), image_tools.resize_with_pad(image, 224, 224))


def test_an_openpi_server_error_fails_the_query_and_the_next_episode_reconnects() -> None:
    policy_server = ScriptedOpenpiPolicy(fail_at=(2,))
    with openpi_server(policy_server) as url:
        policy = connect(url, "openpi")
        policy.begin_episode(7, TASK, 0)
        policy.act(libero_observation())
        with pytest.raises(PolicyError) as error:
            policy.act(libero_observation())
        assert str(error.value) == f"{url}: server error: ValueError: inference 2 fails (the next episode reconnects)"
        with pytest.raises(PolicyError, match="dropped earlier in this episode"):
            policy.act(libero_observation())
        policy.begin_episode(7, TASK, 1)
        assert policy.act(libero_observation())[0, 0] == 3.0
        policy.close()


@pytest.mark.parametrize(
    ("reply", "refusal"),
    [
        (
            {"actions": np.zeros((4, 7))},
            "the server's actions have shape [4, 7]: openpi's LIBERO client takes [H, 7] with H >= 5",
        ),
        ({"actions": np.zeros((10, 8))}, "the server's actions have shape [10, 8]"),
        ({"actions": np.full((5, 7), np.nan)}, "the server's actions hold 35 non-finite values"),
        ({"action": np.zeros((5, 7))}, "the server's reply has no actions (keys ['action'])"),
        ([1, 2], "the server's reply has no actions ([1, 2])"),
    ],
)
def test_hostile_openpi_replies_are_refused_in_one_line(reply: Any, refusal: str) -> None:
    def handler(connection: Any) -> None:
        connection.send(pack_openpi({}))
        connection.recv()
        connection.send(pack_openpi(reply))
        connection.recv()

    with hostile_server(handler) as url:
        policy = connect(url, "openpi")
        policy.begin_episode(7, TASK, 0)
        with pytest.raises(PolicyError) as error:
            policy.act(libero_observation())
        policy.close()
    assert str(error.value).startswith(f"{url}: {refusal}")


# -- Connecting: another protocol, nothing there, not ready, not a URL ------------------------------------------------


def test_a_server_of_the_other_protocol_is_named_by_its_readiness_probe() -> None:
    with openpi_server(ScriptedOpenpiPolicy()) as url, pytest.raises(PolicyError) as error:
        connect(url, "vla-eval")
    assert str(error.value) == (
        f"{url}: another kind of server: GET /health answered HTTP 426, where vla-eval servers answer 200 "
        "(the openpi protocol's probe is GET /healthz)"
    )
    with serve_background(ScriptedServer(), host="127.0.0.1", port=0) as handle, pytest.raises(PolicyError) as error:
        connect(handle.url, "openpi")
    assert str(error.value) == (
        f"{handle.url}: another kind of server: GET /healthz answered HTTP 426, where openpi servers answer 200 "
        "(the vla-eval protocol's probe is GET /health)"
    )


def test_a_server_of_the_other_protocol_is_named_by_its_handshake() -> None:
    def openpi_like(connection: Any) -> None:
        connection.send(pack_openpi({"reset_pose": [0.0]}))
        connection.recv()

    with hostile_server(openpi_like) as url, pytest.raises(PolicyError) as error:
        connect(url, "vla-eval")
    assert str(error.value).startswith(f"{url}: another protocol: the reply to hello is no vla-eval frame (")
    assert str(error.value).endswith("an openpi server sends its metadata unasked (--vla-policy-protocol openpi)")

    def vla_eval_like(connection: Any) -> None:
        connection.recv()  # waits for a hello

    started = time.monotonic()
    with hostile_server(vla_eval_like) as url, pytest.raises(PolicyError) as error:
        connect(url, "openpi", query_timeout_s=0.3)
    assert time.monotonic() - started < 2
    assert str(error.value) == (
        f"{url}: another protocol: no metadata within 0.3 s of connecting; an openpi server sends it at once, a "
        "vla-eval server waits for a hello (--vla-policy-protocol vla-eval)"
    )


def test_nothing_listening_is_unreachable_and_a_silent_listener_is_not_ready() -> None:
    port = free_port()
    started = time.monotonic()
    with pytest.raises(PolicyError) as error:
        connect(f"ws://127.0.0.1:{port}", ready_timeout_s=0.5)
    assert 0.5 <= time.monotonic() - started < 1.5
    assert str(error.value) == (
        f"ws://127.0.0.1:{port}: unreachable: nothing accepted a connection on 127.0.0.1:{port} within 0.5 s "
        "(connection refused)"
    )
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # accepts into the backlog, never answers
        url = f"ws://127.0.0.1:{silent.getsockname()[1]}"
        with pytest.raises(PolicyError) as error:
            connect(url, "openpi", ready_timeout_s=0.5)
    assert str(error.value) == f"{url}: not ready within 0.5 s: GET /healthz: TimeoutError: timed out"


def test_a_server_that_comes_up_late_is_waited_for() -> None:
    port = free_port()

    def serve_later() -> Any:
        time.sleep(0.5)
        return serve_background(ScriptedServer(), host="127.0.0.1", port=port)

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        later = pool.submit(serve_later)
        policy = connect(f"ws://127.0.0.1:{port}", ready_timeout_s=5)
        policy.close()
        later.result().close()


@pytest.mark.parametrize(
    ("url", "refusal"),
    [
        (
            "http://127.0.0.1:8000",
            "'http://127.0.0.1:8000': a policy server's URL is ws://HOST:PORT or wss://HOST:PORT",
        ),
        ("ws://", "'ws://': a policy server's URL is ws://HOST:PORT or wss://HOST:PORT"),
        ("ws://host:99999", "'ws://host:99999': not a URL: Port out of range 0-65535"),
        ("127.0.0.1:8000", "'127.0.0.1:8000': a policy server's URL is"),
    ],
)
def test_urls_other_than_websockets_are_refused(url: str, refusal: str) -> None:
    with pytest.raises(PolicyError) as error:
        connect(url)
    assert str(error.value).startswith(refusal)


def test_an_unknown_protocol_and_a_suite_without_a_client_are_refused() -> None:
    with pytest.raises(PolicyError, match=r"^'grpc' is no policy server protocol \(known: vla-eval, openpi\)$"):
        connect("ws://127.0.0.1:1", "grpc")

    class Bare:
        name, action_dim = "bare", 7

    with pytest.raises(PolicyError) as error:  # at once: nothing listens there, and nothing is waited for
        connect_policy("ws://127.0.0.1:1", "openpi", Bare(), **TIMEOUTS)
    assert str(error.value) == (
        "the bare suite has no client for openpi servers: serve the export with pytest-vla serve (vla-eval protocol), "
        "or evaluate it in-process"
    )
    with hostile_server(replying()) as url, pytest.raises(PolicyError) as error:
        connect_policy(url, "vla-eval", Bare(), **TIMEOUTS)
    assert str(error.value) == (
        f"{url}: a plain vla-eval server (its hello has no pytest_vla): the bare suite has no client for one, only "
        "for pytest-vla serve's extension"
    )
    with pytest.raises(SuiteError, match=r"^the libero suite has no client for 'ros' policy servers"):
        SUITE.served_client("ros", {})


def test_the_fake_suite_speaks_both_protocols(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from tests.fake_suite import FakeEnv, FakeSuite

    monkeypatch.chdir(tmp_path)  # its resets log

    suite, task = FakeSuite(), TaskSpec("fake", 0, "do fake thing 0", 5)
    observation = FakeEnv(task, ("agentview",)).reset(0)
    server = ScriptedServer()
    with serve_background(server, host="127.0.0.1", port=0) as handle:
        policy = connect_policy(handle.url, "vla-eval", suite, **TIMEOUTS)
        policy.begin_episode(7, task, 0)
        assert policy.act(observation).shape == (1, 7)
        policy.close()
    assert server.observations[0]["images"]["agentview"].shape == (16, 16, 3)
    with openpi_server(ScriptedOpenpiPolicy(horizon=4)) as url:
        policy = connect_policy(url, "openpi", suite, **TIMEOUTS)
        policy.begin_episode(7, task, 0)
        assert policy.act(observation).shape == (4, 7)
        policy.close()


def test_a_pytest_vla_server_reading_an_observation_key_a_task_lacks_is_refused_before_any_episode() -> None:
    class Suite(LiberoSuite):
        def observation_shapes(self, task: TaskSpec) -> dict[str, tuple[int, ...]]:
            return {"robot0_joint_pos": (7,)} if task.index == 3 else {}

    hello = {**VLA_EVAL_HELLO, "pytest_vla": EXTENSION}
    with hostile_server(replying(hello=hello)) as url:
        policy = connect_policy(url, "vla-eval", Suite(), **TIMEOUTS)
        assert policy.check(Suite(), [TASK]) == []
        with pytest.raises(PolicyError) as error:
            policy.check(Suite(), [TASK, TaskSpec("libero_goal", 0, "open it", 300)])
        policy.close()
    assert str(error.value) == f"{url}: the server reads ['robot0_joint_pos'], which libero_goal:0 does not observe"


@pytest.mark.libero
def test_on_a_real_libero_env_the_requests_are_vla_evals_and_openpis(libero_benchmark) -> None:
    (task,) = SUITE.resolve_tasks(["libero_object:0"])
    env = SUITE.make_env(task, ("agentview", "wrist"), 7, StateConvention())
    try:
        env.reset(0)
        observation, _ = env.step(np.array([0.5, 0.0, -0.5, 0.0, 0.0, 0.2, -1.0]))
        for params in ({"send_wrist_image": True, "send_state": True}, {"send_state": True, "quat_no_antipodal": True}):
            ours = SUITE.served_client("vla-eval", params).observation(observation, task)
            benchmark = libero_benchmark(**params)
            benchmark._env = env._env  # LIBERO's env, whose arm controller make_obs reads
            assert_same(ours, benchmark.make_obs(observation.raw, {"name": task.instruction}))
        # openpi's state is the 8-D state pytest-vla's env computes under the default convention.
        request = SUITE.served_client("openpi", {}).observation(observation, task)
        assert request["observation/state"].tobytes() == observation.state.tobytes()
    finally:
        env.close()
