"""Checks that run on the controller before any episode, and the plan they produce.

The export and options are checked here; the simulator in the preflight's own process
(:mod:`pytest_vla.preflight`), whose result an identical earlier run may already hold (pytest's
cache). Each failure is one line that names the culprit, so a broken export or setup costs
seconds, not hours.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import hashlib
import inspect
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from pytest_vla import __version__
from pytest_vla.controller.options import Settings, runs_episodes
from pytest_vla.errors import EnvFailure, ExportError, PolicyError, SuiteError, VlaWarning, one_line
from pytest_vla.plan import EvalPlan, rendered_cameras
from pytest_vla.policy.base import Policy
from pytest_vla.policy.check import CheckedPolicy, check_policy, query_once
from pytest_vla.policy.choice import PolicyChoice, make_policy
from pytest_vla.preflight.launch import ProbeProcess, ProbeRequest
from pytest_vla.preflight.result import PreflightFailure, PreflightResult, failed
from pytest_vla.report.schema import TaskSpec
from pytest_vla.report.shards import run_episodes
from pytest_vla.report.stats import scipy_stats
from pytest_vla.rollout.runner import PreparedEnv
from pytest_vla.rollout.threads import available_cpus, threads_per_worker
from pytest_vla.suites import complete_suite, unknown_suite
from pytest_vla.suites.base import Observation, Suite

_CACHE_PREFIX = "vla/preflight/"
# A cached verdict is trusted for a day: it cannot see every change (a remounted data set, a driver
# reinstalled in place), and a day-old check costs seconds to redo.
PREFLIGHT_REUSE_S = 24 * 3600
# What the simulation stack, its GL/EGL and GPU drivers and the dynamic loader read from the
# environment: a change means a fresh preflight.
_STACK_VARIABLES = ("MUJOCO_GL", "PYOPENGL_PLATFORM", "MUJOCO_EGL_DEVICE_ID", "CUDA_VISIBLE_DEVICES",
                    "PYTHONPATH", "HOME", "LD_LIBRARY_PATH", "LD_PRELOAD",
                    "LIBGL_ALWAYS_SOFTWARE", "GALLIUM_DRIVER")  # fmt: skip
_STACK_VARIABLE_PREFIXES = ("MESA_", "__EGL_", "__GLX_", "EGL_", "NVIDIA_")
# The GL, EGL, OSMesa and NVIDIA driver libraries the dynamic loader finds for MuJoCo and onnxruntime.
_DRIVER_LIBRARY = re.compile(r"^lib(OSMesa|EGL|GLX?|GLdispatch|OpenGL|EGL_\w+|GLX_\w+|nvidia-\w+|cuda|cudart)\.so")


class PreflightFailed(Exception):
    """The simulator preflight found the setup unusable; the run stops before any episode (exit 4)."""

    def __init__(self, result: PreflightResult, identity: dict[str, Any]) -> None:
        super().__init__(result.line())
        self.result = result
        self.identity = identity  # the policy's, for the report that says why nothing ran


def make_suite(config: pytest.Config, name: str) -> Suite:
    try:
        suite = config.hook.pytest_vla_make_suite(config=config, name=name)
    except SuiteError as exc:
        raise pytest.UsageError(str(exc)) from None
    if suite is None:
        raise pytest.UsageError(unknown_suite("--vla-suite", name))
    try:
        return complete_suite(suite, f"--vla-suite {name}: the suite {type(suite).__name__}")
    except SuiteError as exc:
        raise pytest.UsageError(str(exc)) from None


def make_policy_here(
    config: pytest.Config, choice: PolicyChoice, suite: Suite, *, workers: int, ready_timeout_s: float
) -> Policy:
    """This process's policy of ``choice`` (``workers`` local processes share the cores); ExportError or PolicyError."""
    return make_policy(
        choice,
        suite,
        # Several workers share the cores: each takes its share, or they thrash (0: onnxruntime's default).
        intra_op_threads=threads_per_worker(workers) if workers > 1 else 0,
        ready_timeout_s=ready_timeout_s,
        named=lambda name: config.hook.pytest_vla_make_policy(config=config, name=name, suite=suite),
    )


@dataclass(frozen=True)
class Preflighted:
    plan: EvalPlan
    policy: Policy  # made by the checks: the process that also runs episodes reuses it
    steps_per_query: int  # actions the policy's query returns for execution
    first_env: PreparedEnv | None  # built here while the probe finished, when this process runs the episodes


def run_preflight(
    config: pytest.Config,
    suite: Suite,
    settings: Settings,
    *,
    explicit_paths: bool,
    probe_env: Mapping[str, str],
    workers: int,
    runs_here: bool,
) -> Preflighted:
    """Check the options, the policy and the simulator; the plan they produce.

    Raises :class:`pytest.UsageError` for bad options, exports and policies, :class:`PreflightFailed`
    when the simulator preflight fails or the policy fails on its real observation. ``probe_env``:
    the environment of the preflight's process (the first worker's); ``workers``: the run's local
    workers, as many envs as the settle sweep may build at once; ``runs_here``: this process runs
    the episodes, so it builds the first one's env while the probe checks the rest.
    """
    if settings.policy.export is not None:
        _check_one_onnxruntime()
    if not 1 <= settings.num_episodes <= suite.max_episodes:
        raise pytest.UsageError(
            f"--vla-num-episodes must be in 1..{suite.max_episodes} ({suite.name} has {suite.max_episodes} "
            f"episodes per task), got {settings.num_episodes}"
        )
    _check_writable(settings)
    try:
        policy = make_policy_here(
            config, settings.policy, suite, workers=workers, ready_timeout_s=settings.preflight_timeout
        )
    except (ExportError, PolicyError) as exc:
        raise pytest.UsageError(str(exc)) from None
    try:
        identity = policy.identity()
        first_env = None
        if runs_episodes(config):
            tasks, checked, result, first_env = _checks_beside_the_simulator(
                config, suite, settings, policy, identity, probe_env, workers, runs_here
            )
        else:  # --collect-only and the like list episodes: no simulator is needed
            tasks, checked, result = *_policy_checks(config, suite, settings, policy), None
    except (ExportError, SuiteError, PolicyError) as exc:
        policy.close()
        raise pytest.UsageError(str(exc)) from None
    except BaseException:
        policy.close()
        raise
    plan = EvalPlan(
        suite=suite.name,
        policy=settings.policy,
        output=settings.output,
        tasks=tuple(tasks),
        num_episodes=settings.num_episodes,
        repeat=settings.repeat,
        seed=settings.seed,
        max_steps_override=settings.max_steps,
        save_trajectories=settings.save_trajectories,
        episode_timeout_override=settings.episode_timeout,
        cameras=policy.cameras,
        state=policy.state,
        provider=policy.provider,
        collect_paths=explicit_paths,
        policy_identity=identity,
        shard=settings.shard,
        video=settings.video,
        preflight=result,
    )
    return Preflighted(plan, policy, checked.steps_per_query, first_env)


def _policy_checks(
    config: pytest.Config, suite: Suite, settings: Settings, policy: Policy
) -> tuple[list[TaskSpec], CheckedPolicy]:
    tasks = suite.resolve_tasks(settings.tasks)
    checked = check_policy(policy, suite, tasks)
    for line in checked.warnings:
        config.issue_config_time_warning(VlaWarning(line), stacklevel=2)
    return tasks, checked


def _checks_beside_the_simulator(
    config: pytest.Config,
    suite: Suite,
    settings: Settings,
    policy: Policy,
    identity: dict[str, Any],
    probe_env: Mapping[str, str],
    workers: int,
    runs_here: bool,
) -> tuple[list[TaskSpec], CheckedPolicy, PreflightResult, PreparedEnv | None]:
    """The policy checks, and the simulator's preflight: an identical earlier run's (pytest's cache), else the probe's.

    The probe imports the stack first, in its own process; once that worked, this process checks
    the policy (which needs the task catalogue) while the probe builds envs, then queries it on the
    probe's first real observation. Where this process runs the episodes, it builds the first
    one's env once the probe has built and reset that env with the same cameras (so a build that
    hangs is the probe's to time out, not this process's), while the probe checks the rest. A cost
    preview also takes a full run's cached result (it checked more). Raises PreflightFailed.
    """
    cache = getattr(config, "cache", None)  # None under -p no:cacheprovider: a fresh preflight every run
    key = None
    if cache is not None:  # the key's facts (the loader's listing, every source file's stat) serve the cache only
        facts = _preflight_facts(suite, settings, identity, policy, probe_env)
        key = _cache_key(facts)
        # A preview's preflight skips the settle sweep: a full run's result covers it too.
        candidates = [key] if facts["sweep"] else [key, _cache_key({**facts, "sweep": True})]
        for candidate in candidates:
            cached = _cached_result(config, cache.get(candidate, None))
            if cached is not None:
                tasks, checked = _policy_checks(config, suite, settings, policy)
                return tasks, checked, cached, None
    request = ProbeRequest(
        selection=settings.tasks,
        num_episodes=settings.num_episodes,
        repeat=settings.repeat,
        shard=settings.shard.to_json() if settings.shard else None,
        cameras=rendered_cameras(policy.cameras, suite.video_camera, settings.video),
        seed=settings.seed,
        state=policy.state,
        sweep=not settings.cost_preview,  # the estimate needs timings, not every task's settle check
        processes=min(workers, available_cpus()),
        render_backend=probe_env.get("MUJOCO_GL", "osmesa"),
    )
    timeout_s, log_dir = settings.preflight_timeout, settings.output
    with ProbeProcess(suite, request, timeout_s=timeout_s, env=probe_env, log_dir=log_dir) as probe:
        scipy_stats()  # the run's statistics, imported while the probe imports the stack
        probe.wait_past_import()
        if not probe.running() and not (result := probe.result()).passed:
            raise PreflightFailed(result, identity)  # the stack does not import: this process must not try
        try:
            tasks, checked = _policy_checks(config, suite, settings, policy)
        except (ExportError, SuiteError, PolicyError):
            raise
        except Exception as exc:  # the stack failed here too: the probe's classified account is the better one
            if not (result := probe.result()).passed:
                raise PreflightFailed(result, identity) from None
            raise pytest.UsageError(f"checking the policy against {suite.name}: {one_line(exc)}") from None
        first_env = None
        if runs_here and not settings.cost_preview and probe.wait_for_first_env():
            first_env = _prepare_first_env(suite, settings, policy, tasks)
        try:
            result = probe.result()
            if not result.passed:
                raise PreflightFailed(result, identity)
            observation = probe.first_observation()
            result = _query_real_observation(settings, suite, policy, tasks[0], observation, result, identity)
        except BaseException:
            if first_env is not None:
                first_env.env.close()
            raise
    if cache is not None and key is not None:
        cache.set(key, {"stored_at": time.time(), "result": result.to_json()})
    return tasks, checked, result, first_env


def _prepare_first_env(suite: Suite, settings: Settings, policy: Policy, tasks: list[TaskSpec]) -> PreparedEnv | None:
    """The env of the task this process runs first, as the runner would build it; None where it fails to build
    (the runner builds it again and records the failure in the episode's row)."""
    episodes = run_episodes(tasks, settings.num_episodes, settings.repeat)
    if settings.shard is not None:
        episodes = settings.shard.share(episodes)
    if not episodes:
        return None
    task = next(task for task in tasks if task.key == episodes[0].task_key)
    cameras = rendered_cameras(policy.cameras, suite.video_camera, settings.video)
    started = time.perf_counter()
    try:
        env = suite.make_env(task, cameras, settings.seed, policy.state)
    except EnvFailure:
        return None
    return PreparedEnv(task, env, time.perf_counter() - started)


def _query_real_observation(
    settings: Settings,
    suite: Suite,
    policy: Policy,
    task: TaskSpec,
    observation: Observation,
    result: PreflightResult,
    identity: dict[str, Any],
) -> PreflightResult:
    """``result`` with the policy's query seconds on the first real observation (the second query's: the first
    warms up); PreflightFailed when its answer is unusable."""
    source = "the first real observation"
    answers: list[float | BaseException] = []

    def query() -> None:
        try:
            query_once(policy, suite, task, observation, source)
            started = time.perf_counter()
            query_once(policy, suite, task, observation, source)
            answers.append(time.perf_counter() - started)
        except BaseException as exc:
            answers.append(exc)

    # A policy stuck in native code cannot be interrupted: the daemon thread is left behind as the run stops.
    thread = threading.Thread(target=query, name="pytest-vla real-observation query", daemon=True)
    thread.start()
    thread.join(settings.preflight_timeout)
    failure = PreflightFailure.EXPORT_INVALID if settings.policy.export else PreflightFailure.POLICY_INVALID
    if not answers:
        # Left running, it aborts the interpreter's teardown (onnxruntime's destructors under a running call).
        atexit.register(_exit_if_alive, thread, pytest.ExitCode.USAGE_ERROR)
        what = "the export" if settings.policy.export else "the policy"
        message = (
            f"running {what} on {task.key}'s first observation took longer than --vla-preflight-timeout "
            f"{settings.preflight_timeout:g} s"
        )
        raise PreflightFailed(
            failed(failure, message, elapsed_s=result.elapsed_s, render_backend=result.render_backend), identity
        )
    (answer,) = answers
    if isinstance(answer, (ExportError, PolicyError)):
        raise PreflightFailed(
            failed(failure, str(answer), elapsed_s=result.elapsed_s, render_backend=result.render_backend), identity
        )
    if isinstance(answer, BaseException):
        raise answer
    inference_s = answer
    assert result.timings is not None
    timings = dataclasses.replace(result.timings, inference_s=inference_s)
    message = f"{result.message}; the policy answered its first observation"
    return dataclasses.replace(result, timings=timings, message=message)


def _exit_if_alive(thread: threading.Thread, status: int) -> None:
    if thread.is_alive():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)


def _cached_result(config: pytest.Config, entry: Any) -> PreflightResult | None:
    """An earlier identical run's passed preflight, unless it is older than a day or unreadable (said in one line)."""
    if entry is None:
        return None
    try:
        age_s = time.time() - float(entry["stored_at"])
        result = PreflightResult.from_json(entry["result"])
    except (KeyError, TypeError, ValueError) as exc:
        config.issue_config_time_warning(
            VlaWarning(f"the cached preflight result is unreadable ({one_line(exc)}): running a fresh preflight"),
            stacklevel=2,
        )
        return None
    if not 0 <= age_s <= PREFLIGHT_REUSE_S or not result.passed:
        return None
    return dataclasses.replace(result, reused=True)


def _preflight_facts(
    suite: Suite, settings: Settings, identity: dict[str, Any], policy: Policy, probe_env: Mapping[str, str]
) -> dict[str, Any]:
    """Everything a preflight's verdict depends on: this host and its drivers, the installed packages (and
    pytest-vla's own code), the stack's variables, what the suite reads from this machine, the policy."""
    source = inspect.getsourcefile(type(suite))
    machine_facts = getattr(suite, "machine_facts", None)
    return {
        "pytest_vla": [__version__, _stamp(Path(__file__).parents[1].rglob("*.py"))],
        "host": platform.node(),
        "driver_libraries": _driver_libraries(probe_env),
        "nvidia_driver": _read_text(Path("/proc/driver/nvidia/version")),
        "python": sys.executable,
        "packages": sorted(f"{dist.metadata['Name']}=={dist.version}" for dist in metadata.distributions()),
        "variables": {
            name: value
            for name, value in sorted(probe_env.items())
            if name in _STACK_VARIABLES or name.startswith(_STACK_VARIABLE_PREFIXES)
        },
        "suite": [suite.name, source, os.stat(source).st_mtime_ns if source else None],
        "suite_machine": machine_facts() if machine_facts is not None else None,
        "policy": [identity, list(policy.cameras), policy.state.to_json()],
        "selection": [list(settings.tasks), settings.num_episodes, settings.repeat, str(settings.shard), settings.seed],
        "video": settings.video,
        "sweep": not settings.cost_preview,
    }


def _driver_libraries(env: Mapping[str, str]) -> str:
    """The driver libraries the loader finds (``LD_LIBRARY_PATH``, then its cache), stamped: an update changes it."""
    paths: set[Path] = set()
    for directory in filter(None, env.get("LD_LIBRARY_PATH", "").split(":")):
        with contextlib.suppress(OSError):
            paths.update(path for path in Path(directory).iterdir() if _DRIVER_LIBRARY.match(path.name))
    ldconfig = shutil.which("ldconfig") or "/sbin/ldconfig"
    try:
        listing = subprocess.run([ldconfig, "-p"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        listing = ""
    for line in listing.splitlines():
        name, _, path = line.strip().partition(" => ")
        if _DRIVER_LIBRARY.match(name):
            paths.add(Path(path))
    return _stamp(paths)


def _stamp(paths: Iterable[Path]) -> str:
    """A digest of where ``paths`` really are, their sizes and modification times."""
    entries = []
    for path in paths:
        with contextlib.suppress(OSError):
            real = path.resolve()
            stat = real.stat()
            entries.append(f"{path}>{real}:{stat.st_size}:{stat.st_mtime_ns}")
    return hashlib.sha256("\n".join(sorted(entries)).encode()).hexdigest()


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None


def _cache_key(facts: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(facts, sort_keys=True, default=str).encode()).hexdigest()
    return _CACHE_PREFIX + digest[:32]


def _check_one_onnxruntime() -> None:
    """onnxruntime's builds (CPU, GPU, ...) share the import name: with two installed, which one loads is chance."""
    builds = sorted(set(metadata.packages_distributions().get("onnxruntime", [])))
    if len(builds) > 1:
        keep = "onnxruntime-gpu" if "onnxruntime-gpu" in builds else builds[0]
        others = " ".join(build for build in builds if build != keep)
        raise pytest.UsageError(
            f"{' and '.join(builds)} are both installed and share the import name onnxruntime: keep one, "
            f"e.g. pip uninstall -y {others} && pip install --force-reinstall --no-deps {keep}"
        )


def _check_writable(settings: Settings) -> None:
    try:
        settings.output.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=settings.output, prefix=".write-check-"):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise pytest.UsageError(f"--vla-output {settings.output} is not writable: {reason}") from None
