"""Run the probe in its own process, time each of its stages out, and classify what it could not report."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from pytest_vla.errors import SuiteError, one_line, read_json
from pytest_vla.preflight.probe import ProbeSpec
from pytest_vla.preflight.result import PreflightFailure, PreflightResult, failed
from pytest_vla.report.layout import OutputLayout
from pytest_vla.suites.base import Observation, StateConvention, Suite

POLL_S = 0.1


@dataclass(frozen=True)
class ProbeRequest:
    selection: tuple[str, ...]
    num_episodes: int
    repeat: int
    shard: dict[str, int] | None
    cameras: tuple[str, ...]
    seed: int
    state: StateConvention  # the policy's
    sweep: bool
    processes: int
    render_backend: str


class ProbeProcess:
    """The probe, running: the controller checks the policy while it builds envs.

    ``timeout_s`` bounds each stage (the import, one env build, a reset, the rendered steps, one
    task's settle check): a stage that takes longer is a hang, classified by what it was doing.
    The probe's own output goes to ``log_dir/preflight.log``. Use as a context manager: leaving
    it ends the process and removes its files.
    """

    def __init__(
        self, suite: Suite, request: ProbeRequest, *, timeout_s: float, env: Mapping[str, str], log_dir: Path
    ) -> None:
        self.request = request
        self.timeout_s = timeout_s
        self._remedies = dict(suite.remedies)
        self._started = time.time()
        self._scratch = tempfile.TemporaryDirectory(prefix="vla-preflight-")
        work = Path(self._scratch.name)
        try:
            (work / "suite.pickle").write_bytes(pickle.dumps(suite))
        except Exception as exc:
            self._scratch.cleanup()
            raise SuiteError(
                f"suite {suite.name!r} ({type(suite).__module__}.{type(suite).__qualname__}) cannot be sent to the "
                f"preflight's process: {one_line(exc)}; define it at the top level of an importable module"
            ) from None
        self.spec = ProbeSpec(
            suite=str(work / "suite.pickle"),
            selection=list(request.selection),
            num_episodes=request.num_episodes,
            repeat=request.repeat,
            shard=request.shard,
            cameras=list(request.cameras),
            seed=request.seed,
            state=request.state.to_json(),
            sweep=request.sweep,
            processes=request.processes,
            render_backend=request.render_backend,
            stages=str(work / "stages"),
            result=str(work / "result.json"),
            observation=str(work / "observation.pickle"),
        )
        self.spec.write(work / "spec.json")
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log = OutputLayout(log_dir).preflight_log
        with self.log.open("wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "pytest_vla.preflight.probe", str(work / "spec.json")],
                stdin=subprocess.DEVNULL,  # a prompt reads end-of-file at once instead of waiting
                stdout=log,
                stderr=subprocess.STDOUT,
                env=_probe_environment(env),
                start_new_session=True,  # its own process group: a timeout ends its children too
            )
        self._stage, self._stage_since = "", time.monotonic()
        self._stuck: str | None = None

    def __enter__(self) -> ProbeProcess:
        return self

    def __exit__(self, *_exc: object) -> None:
        self._kill()
        self._scratch.cleanup()

    def wait_past_import(self) -> None:
        """Return once the stack imported in the probe (so this process may import it too), or the probe ended."""
        while self.running() and _stage_kind(self._stage) in ("", "versions", "import"):
            time.sleep(POLL_S)

    def wait_for_first_env(self) -> bool:
        """Whether the probe built and reset the first task's env with the run's cameras (it wrote that
        observation), waiting for it; False once the probe ended without."""
        observation = Path(self.spec.observation)
        while not observation.is_file() and self.running():
            time.sleep(POLL_S)
        return observation.is_file()

    def result(self) -> PreflightResult:
        """Wait for the end; the result, classified when the probe hung or died; SuiteError for a bad selection."""
        while self.running():
            time.sleep(POLL_S)
        # Until the probe wrote its result: this process may have built an env meanwhile.
        elapsed = max(_written_at(Path(self.spec.result)) - self._started, 0.0)
        backend = self.request.render_backend
        if self._stuck is not None:
            message = (
                f"{_doing(self._stuck)} took longer than --vla-preflight-timeout {self.timeout_s:g} s; its last "
                f"output: {_last_line(self.log)} (log: {self.log})"
            )
            return failed(
                _hung(self._stuck, backend), message, elapsed_s=elapsed, render_backend=backend, remedies=self._remedies
            )
        result_path = Path(self.spec.result)
        if not result_path.is_file():
            stage = _last_stage(Path(self.spec.stages))
            message = (
                f"the preflight's process died while {_doing(stage)} ({_exit_status(self.process.returncode)}): "
                f"{_last_line(self.log)} (log: {self.log})"
            )
            return failed(
                _crashed(stage, backend), message, elapsed_s=elapsed, render_backend=backend, remedies=self._remedies
            )
        data = read_json(result_path, SuiteError)
        if "selection_error" in data:
            raise SuiteError(data["selection_error"])
        # Timed here: starting the process and importing are part of what the preflight costs.
        result = dataclasses.replace(PreflightResult.from_json(data), elapsed_s=elapsed)
        return result

    def first_observation(self) -> Observation:
        """The first task's first observation, as the env showed it (after a passed :meth:`result`)."""
        # Written by this process's own child, from objects of this package: no file from others.
        return pickle.loads(Path(self.spec.observation).read_bytes())

    def running(self) -> bool:
        """Whether the probe still runs; ends it when its current stage has run past the timeout."""
        if self.process.poll() is not None:
            return False
        stage = _last_stage(Path(self.spec.stages))
        if stage != self._stage:
            self._stage, self._stage_since = stage, time.monotonic()
        elif time.monotonic() - self._stage_since > self.timeout_s:
            self._stuck = stage or "starting"
            self._kill()
            return False
        return True

    def _kill(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def _probe_environment(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` with this process's import path after any PYTHONPATH: the suite may live in a conftest."""
    paths = [env["PYTHONPATH"]] if env.get("PYTHONPATH") else []
    return {**env, "PYTHONPATH": os.pathsep.join([*paths, *(path for path in sys.path if path)])}


def _written_at(path: Path) -> float:
    """When ``path`` was last written (wall clock), else now."""
    try:
        return path.stat().st_mtime
    except OSError:
        return time.time()


def _last_stage(stages: Path) -> str:
    try:
        lines = stages.read_text(encoding="utf-8").splitlines()
    except OSError:
        return ""
    return lines[-1] if lines else ""


def _hung(stage: str, render_backend: str) -> PreflightFailure:
    if stage in ("", "starting", "versions", "import"):
        return PreflightFailure.INPUT_HANG  # nothing but imports ran: an import waiting for an answer
    if render_backend == "egl" and not stage.startswith("settle"):
        return PreflightFailure.EGL_DEVICE
    return PreflightFailure.OSMESA_COMPILE_HANG


def _stage_kind(stage: str) -> str:
    return stage.partition(" ")[0]


def _crashed(stage: str, render_backend: str) -> PreflightFailure:
    if render_backend == "egl" and _stage_kind(stage) in ("build", "reset", "render"):
        return PreflightFailure.EGL_DEVICE
    return PreflightFailure.IMPORT_ERROR


def _doing(stage: str) -> str:
    verb, _, task = stage.partition(" ")
    return {
        "": "starting",
        "starting": "starting",
        "versions": "checking versions",
        "import": "importing the simulation stack",
        "build": f"building {task} with cameras",
        "reset": f"resetting {task}",
        "render": f"rendering {task}",
        "settle": f"checking {task} settles",
    }.get(verb, stage)


def _exit_status(code: int | None) -> str:
    if code is not None and code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


def _last_line(log: Path) -> str:
    try:
        lines = [line.strip() for line in log.read_text(encoding="utf-8", errors="replace").splitlines()]
    except OSError:
        return "no output"
    return next((line for line in reversed(lines) if line), "no output")
