"""Served and named policies, run the way users run them: the options, the real upstream servers, pytester."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
from vla_eval import serve_background

from pytest_vla.controller.exit_status import HARNESS_ERROR_EXIT
from tests.conftest import FAKE_SUITE
from tests.models import linear_policy, write_export
from tests.served_servers import ScriptedOpenpiPolicy, ScriptedServer, free_port, openpi_server

REPO = Path(__file__).resolve().parents[1]


class BatchRecordingServer(ScriptedServer):
    """A ScriptedServer that batches across connections and records the size of every batch."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.batch_sizes: list[int] = []

    def predict_batch(self, obs_batch: list[dict[str, Any]], ctx_batch: list[Any]) -> list[dict[str, Any]]:
        self.batch_sizes.append(len(obs_batch))
        time.sleep(0.05)  # a model's forward pass: the other worker's observation arrives meanwhile
        return [self.predict(obs, ctx) for obs, ctx in zip(obs_batch, ctx_batch, strict=True)]


class FailOnceOpenpiPolicy(ScriptedOpenpiPolicy):
    """Raises on the first request whose prompt is ``prompt``: openpi's server then closes with 1011."""

    def __init__(self, prompt: str, **options: Any) -> None:
        super().__init__(**options)
        self.prompt, self.failed = prompt, False

    def infer(self, obs: dict[str, Any]) -> dict[str, Any]:
        if obs["prompt"] == self.prompt and not self.failed:
            self.failed = True
            raise RuntimeError("CUDA out of memory")
        return super().infer(obs)


def run_fake(pytester: pytest.Pytester, *args: str, script: dict[str, str] | None = None) -> pytest.RunResult:
    """pytest-vla on the fake suite (its conftest in place) with ``args`` naming the policy."""
    os.environ["FAKE_SUITE_SCRIPT"] = json.dumps(script or {})
    if not (pytester.path / "conftest.py").exists():
        pytester.makeconftest(FAKE_SUITE)
    return pytester.runpytest_subprocess("--vla-suite", "fake", *args)


@pytest.fixture(autouse=True)
def _script_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAKE_SUITE_SCRIPT", "{}")  # run_fake sets it; monkeypatch restores it


def report_of(pytester: pytest.Pytester, validate_report, output: str = "eval_output") -> dict[str, Any]:
    return validate_report(pytester.path / output / "report.json")


# --- vla-eval servers ----------------------------------------------------------------------------


def test_a_vla_eval_server_serves_two_workers_in_batches(pytester: pytest.Pytester, validate_report) -> None:
    server = BatchRecordingServer(actions=lambda k: np.zeros(7), max_batch_size=2, max_wait_time=0.5)
    with serve_background(server, host="127.0.0.1", port=0) as handle:
        result = run_fake(
            pytester, "--vla-policy-server", handle.url, "--vla-num-episodes", "2", "-n", "2", script={"0": "succeed"}
        )
    result.assert_outcomes(passed=2, failed=6)
    result.stdout.fnmatch_lines([f"vla: policy server {handle.url} (vla-eval)"])
    report = report_of(pytester, validate_report)
    assert report["protocol"]["policy_client"] == "vla-eval"
    identity = report["env"]["policy"]
    assert (identity["kind"], identity["protocol"], identity["url"]) == ("served", "vla-eval", handle.url)
    assert identity["server"]["model_server"] == "BatchRecordingServer"
    rows = report["episodes"]
    assert {row["worker"] for row in rows} == {"gw0", "gw1"}
    assert report["execution_provider"] == f"{handle.url} (vla-eval)"
    # One connection per worker (and the preflight's), one episode_start and episode_end per episode,
    # and observations of the two workers answered in one batch.
    assert len(set(server.sessions)) >= 3
    episode_tasks = [start["task"]["name"] for start in server.episode_starts]
    assert sum(name.startswith("do fake thing") for name in episode_tasks) >= 8
    assert len(server.episode_ends) >= 8
    assert max(server.batch_sizes) == 2


class FailOnceServer(ScriptedServer):
    """Raises in the first prediction of an episode 1 (the preflight's queries are episodes 0)."""

    failed = False

    def predict(self, obs: dict[str, Any], ctx: Any) -> dict[str, Any]:
        if self.episode_starts[-1]["task"]["episode_idx"] == 1 and not self.failed:
            self.failed = True
            raise RuntimeError("CUDA out of memory")
        return super().predict(obs, ctx)


def test_an_error_frame_costs_one_episode_and_resume_runs_it_again(pytester: pytest.Pytester, validate_report) -> None:
    server = FailOnceServer(actions=lambda k: np.zeros(7))
    common = ("--vla-tasks", "fake:2", "--vla-num-episodes", "3", "-p", "no:xdist")
    with serve_background(server, host="127.0.0.1", port=0) as handle:
        first = run_fake(pytester, "--vla-policy-server", handle.url, *common)
        assert first.ret == HARNESS_ERROR_EXIT
        rows = {row["episode_index"]: row for row in report_of(pytester, validate_report)["episodes"]}
        assert rows[1]["terminal_reason"] == "adapter_error"
        assert "server error: " in rows[1]["error_message"] and "CUDA out of memory" in rows[1]["error_message"]
        assert rows[0]["terminal_reason"] == rows[2]["terminal_reason"] == "timeout"  # the connection served on

        (pytester.path / "resets.log").unlink()
        resumed = run_fake(pytester, "--vla-policy-server", handle.url, *common, "--vla-resume")
    resumed.assert_outcomes(failed=1)
    assert (pytester.path / "resets.log").read_text().split() == ["2:1"]
    rows = {row["episode_index"]: row for row in report_of(pytester, validate_report)["episodes"]}
    assert [rows[i]["terminal_reason"] for i in range(3)] == ["timeout"] * 3


@pytest.fixture
def killable_server() -> Iterator[tuple[str, subprocess.Popen]]:
    """A vla-eval ScriptedServer in its own process (``python -m tests.served_servers``)."""
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.served_servers"], cwd=REPO, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        yield f"ws://127.0.0.1:{process.stdout.readline().strip()}", process
    finally:
        process.kill()
        process.wait()


def test_a_server_killed_mid_run_costs_the_episodes_it_missed_and_the_run_says_so(
    pytester: pytest.Pytester, validate_report, killable_server
) -> None:
    url, process = killable_server
    pytester.makeconftest(
        FAKE_SUITE
        + f"""

def pytest_runtest_setup(item):
    if item.nodeid.endswith("::ep1"):
        import os, signal
        os.kill({process.pid}, signal.SIGKILL)
"""
    )
    # The first reconnection waits the ready timeout (the preflight's, in one process), later ones 5 s.
    result = run_fake(
        pytester, "--vla-policy-server", url, "--vla-tasks", "fake:0", "--vla-num-episodes", "4",
        "--vla-preflight-timeout", "10",
    )  # fmt: skip
    assert result.ret == HARNESS_ERROR_EXIT
    assert "Traceback" not in result.stdout.str()
    rows = {row["episode_index"]: row for row in report_of(pytester, validate_report)["episodes"]}
    assert sorted(rows) == [0, 1, 2, 3]
    assert rows[0]["terminal_reason"] == "timeout"
    assert "within 10 s" in rows[2]["error_message"] and "within 5 s" in rows[3]["error_message"]
    assert [rows[i]["terminal_reason"] for i in (1, 2)] == ["adapter_error"] * 2
    # The kill races the first send: the client learns of it sending the observation or awaiting the reply.
    assert re.search(
        f"{re.escape(url)}: the server closed the connection while (sending|waiting for the reply)",
        rows[1]["error_message"],
    )
    assert f"{url}: unreachable: nothing accepted a connection" in rows[2]["error_message"]


# --- openpi servers ------------------------------------------------------------------------------


def test_an_openpi_server_through_the_options_and_its_error_close(pytester: pytest.Pytester, validate_report) -> None:
    policy = FailOnceOpenpiPolicy("do fake thing 1", horizon=10)
    with openpi_server(policy, metadata={"model": "pi05_libero"}) as url:
        result = run_fake(
            pytester, "--vla-policy-server", url, "--vla-policy-protocol", "openpi",
            "--vla-tasks", "fake:0,fake:1", "--vla-num-episodes", "2", "-p", "no:xdist",
        )  # fmt: skip
    assert result.ret == HARNESS_ERROR_EXIT
    report = report_of(pytester, validate_report)
    assert report["protocol"]["policy_client"] == "openpi"
    identity = report["env"]["policy"]
    assert (identity["kind"], identity["protocol"], identity["server"]) == (
        "served",
        "openpi",
        {"model": "pi05_libero"},
    )
    rows = {(row["task_index"], row["episode_index"]): row for row in report["episodes"]}
    assert rows[1, 0]["terminal_reason"] == "adapter_error"
    assert "CUDA out of memory" in rows[1, 0]["error_message"]
    # The worker reconnected: the episodes after the error ran.
    assert [rows[key]["terminal_reason"] for key in [(0, 0), (0, 1), (1, 1)]] == ["timeout"] * 3
    assert {request["prompt"] for request in policy.requests} == {"do fake thing 0", "do fake thing 1"}


# --- refused before any episode ------------------------------------------------------------------


@pytest.fixture(scope="module")
def wrong_servers() -> Iterator[dict[str, str]]:
    shapes = ScriptedServer(actions=lambda k: np.zeros(5))
    with (
        serve_background(shapes, host="127.0.0.1", port=0) as vla_eval,
        openpi_server(ScriptedOpenpiPolicy()) as openpi,
    ):
        yield {"vla-eval": vla_eval.url, "openpi": openpi, "nothing": f"ws://127.0.0.1:{free_port()}"}


@pytest.mark.parametrize(
    ("server", "protocol", "refusal"),
    [
        ("nothing", "vla-eval", "ERROR: ws://127.0.0.1:*: unreachable: nothing accepted a connection * within 3 s *"),
        ("openpi", "vla-eval", "ERROR: ws://127.0.0.1:*: another kind of server: GET /health answered HTTP 426*"),
        ("vla-eval", "openpi", "ERROR: ws://127.0.0.1:*: another kind of server: GET /healthz answered HTTP 426*"),
        (
            "vla-eval",
            "vla-eval",
            "ERROR: ws://127.0.0.1:*: on a synthetic observation: the server's actions have "
            "shape [[]5[]], not [[]7[]] or [[]K, 7[]]",
        ),
    ],
)
def test_a_server_that_cannot_serve_the_run_is_refused_in_one_line_before_any_episode(
    pytester: pytest.Pytester, wrong_servers: dict[str, str], server: str, protocol: str, refusal: str
) -> None:
    result = run_fake(
        pytester, "--vla-policy-server", wrong_servers[server], "--vla-policy-protocol", protocol,
        "--vla-policy-timeout", "5", "--vla-preflight-timeout", "3",
    )  # fmt: skip
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([refusal])
    assert "Traceback" not in result.stderr.str() + result.stdout.str()
    assert not (pytester.path / "resets.log").exists()


# --- a conftest's own policy ---------------------------------------------------------------------

SCRIPTED_POLICY = """

class ScriptedPolicy:
    '''A Python controller: closes the gripper, and counts its episodes in its identity.'''

    cameras = ("agentview",)
    state = StateConvention()
    provider = "python"

    def __init__(self):
        self.episodes = []

    def identity(self):
        return {"kind": "scripted", "version": 2}

    def check(self, suite, tasks):
        return ["the scripted policy ignores the camera"]

    def begin_episode(self, seed, task, episode_index):
        self.episodes.append((task.index, episode_index))

    def act(self, observation):
        assert observation.images["agentview"].ndim == 3
        return np.tile([0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0], (2, 1))

    def end_episode(self, success, n_steps):
        with open("episodes.log", "a") as log:
            log.write(f"{self.episodes[-1]} {success} {n_steps}\\n")

    def close(self):
        pass


def pytest_vla_make_policy(config, name, suite):
    return ScriptedPolicy() if name == "scripted" else None
"""


def test_a_conftest_policy_is_evaluated_by_name_on_every_worker(pytester: pytest.Pytester, validate_report) -> None:
    pytester.makeconftest(FAKE_SUITE + SCRIPTED_POLICY)
    result = run_fake(
        pytester, "--vla-policy", "scripted", "--vla-num-episodes", "2", "-n", "2", script={"1": "succeed"}
    )
    result.assert_outcomes(passed=2, failed=6)
    out = result.stdout.str()
    assert "vla: policy 'scripted' on python" in out
    assert "the scripted policy ignores the camera" in out
    report = report_of(pytester, validate_report)
    assert report["env"]["policy"] == {"kind": "scripted", "version": 2}
    assert report["protocol"]["policy_client"] == "in-process"
    assert {row["worker"] for row in report["episodes"]} == {"gw0", "gw1"}
    # The preflight's queries end their episodes at step 0; the workers' ran theirs.
    ends = sorted(line for line in (pytester.path / "episodes.log").read_text().splitlines() if line[-2:] != " 0")
    assert ends[:2] == ["(0, 0) False 5", "(0, 1) False 5"]
    assert "(1, 0) True 2" in ends

    # Another identity is another policy: resume refuses to mix them.
    (pytester.path / "conftest.py").write_text(
        (pytester.path / "conftest.py").read_text().replace('"version": 2', '"version": 3')
    )
    resumed = run_fake(pytester, "--vla-policy", "scripted", "--vla-num-episodes", "3", "--vla-resume")
    assert resumed.ret == pytest.ExitCode.USAGE_ERROR
    resumed.stderr.fnmatch_lines(["ERROR: --vla-resume: *another policy: policy 'scripted', this run evaluates*"])


def test_a_policy_no_plugin_makes_and_two_policies_at_once_are_refused(pytester: pytest.Pytester) -> None:
    unknown = run_fake(pytester, "--vla-policy", "nobody")
    assert unknown.ret == pytest.ExitCode.USAGE_ERROR
    unknown.stderr.fnmatch_lines(["ERROR: --vla-policy 'nobody': no plugin or conftest made it*"])
    both = run_fake(pytester, "--vla-policy", "nobody", "--vla-policy-server", "ws://127.0.0.1:1")
    assert both.ret == pytest.ExitCode.USAGE_ERROR
    both.stderr.fnmatch_lines(["ERROR: *--vla-policy*--vla-policy-server*"])


# --- real LIBERO: one export in-process, through pytest-vla serve, and inside a vla-eval server ---


class OnnxServer(ScriptedServer):
    """A vla-eval model server around an ONNX model of one state input, as a user would wrap theirs."""

    def __init__(self, model: Path, **options: Any) -> None:
        super().__init__(observation_params={"send_state": True}, **options)
        self.session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])

    def predict(self, obs: dict[str, Any], ctx: Any) -> dict[str, Any]:
        self.observations.append(obs)
        state = np.asarray(obs["states"], dtype=np.float32)[None]
        return {"actions": self.session.run(None, {"state": state})[0][0]}


@pytest.mark.libero
def test_one_export_gives_the_same_episodes_in_process_served_and_inside_a_vla_eval_server(
    pytester: pytest.Pytester, validate_report, serve_export
) -> None:
    # The state vla-eval's LIBERO client sends (the quaternion flipped to w >= 0) and its gripper
    # rule (binarised), declared by the export, so all three paths must agree bit for bit.
    export = write_export(
        pytester.path / "export",
        linear_policy(chunk=4),
        {"state": {"source": "state", "quaternion": "antipodal"}},
        {"output": "actions", "dim": 7, "gripper": "binarize"},
    )
    common = ("--vla-tasks", "libero_object:1", "--vla-num-episodes", "1", "--vla-max-steps", "10",
              "--vla-save-trajectories", "-p", "no:xdist")  # fmt: skip
    runs = {
        "in_process": ("--vla-export", str(export)),
        "pytest_vla_serve": ("--vla-policy-server", serve_export(export)),
    }
    server = OnnxServer(export / "model.onnx", chunk_size=4)
    with serve_background(server, host="127.0.0.1", port=0) as handle:
        runs["vla_eval_server"] = ("--vla-policy-server", handle.url)
        for output, policy in runs.items():
            pytester.runpytest_subprocess(*policy, *common, "--vla-output", output).assert_outcomes(failed=1)
    trajectories = {
        output: np.load(pytester.path / output / "trajectories" / "libero_object_task1_episode_0.npz")
        for output in runs
    }
    reference = trajectories["in_process"]
    assert reference["actions"].shape == (10, 7) and set(np.unique(reference["actions"][:, -1])) <= {-1.0, 1.0}
    for output in ("pytest_vla_serve", "vla_eval_server"):
        np.testing.assert_array_equal(trajectories[output]["actions"], reference["actions"], err_msg=output)
        np.testing.assert_array_equal(trajectories[output]["states"], reference["states"], err_msg=output)
    clients = {output: report_of(pytester, validate_report, output)["protocol"]["policy_client"] for output in runs}
    assert clients == {"in_process": "in-process", "pytest_vla_serve": "vla-eval", "vla_eval_server": "vla-eval"}
    # The model ran for the preflight's 3 queries (synthetic, real twice), then once per chunk of 4 over 10 steps.
    assert len(server.observations) == 3 + 3


# --- pytest-vla inspect URL ----------------------------------------------------------------------


def test_inspect_names_what_a_server_announces_and_refuses_one_that_cannot_serve(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from pytest_vla.cli import main

    server = ScriptedServer(actions=lambda k: np.zeros(7), observation_params={"send_wrist_image": True})
    with serve_background(server, host="127.0.0.1", port=0) as handle:
        assert main(["inspect", handle.url, "--tasks", "libero_object:0"]) == 0
        out = capsys.readouterr().out
        assert f"server   {handle.url}  (vla-eval)" in out
        assert '"model_server": "ScriptedServer"' in out
        assert "sends    cameras agentview, wrist; state (from observation, quaternion antipodal)" in out
        assert "checks   passed on 1 libero task(s)" in out and "finite actions [1, 7]" in out
        assert main(["inspect", handle.url, "--protocol", "openpi", "--timeout", "2"]) == 1
        assert capsys.readouterr().err.startswith(f"ERROR: {handle.url}: another kind of server: GET /healthz")
    assert main(["inspect", f"ws://127.0.0.1:{free_port()}", "--timeout", "1"]) == 1
    assert "unreachable: nothing accepted a connection" in capsys.readouterr().err
