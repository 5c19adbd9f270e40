"""The preflight's own process: ``python -m pytest_vla.preflight.probe SPEC``.

It does what the first episode would, once and with nothing else in the process: check the stack's
versions, import it (resolving the task selection), build and reset the first task's env with the
cameras the run renders, check the frames are not blank, keep that real observation for the
controller's policy query (``observation``: the policy lives in the controller, which may have
made it from a conftest or connected it to a server), and check each selected task's scene is
at rest after the protocol's settle steps (with several workers, that many at a time in forked
processes). It writes each stage's name to ``stages`` as it starts (the controller times stages
out) and its findings to ``result``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import multiprocessing
import pickle
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent import futures
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet

from pytest_vla.errors import EnvFailure, SuiteError, one_line
from pytest_vla.preflight.result import PreflightFailure, PreflightResult, PreflightTimings, failed
from pytest_vla.report.schema import TaskSpec, TerminalReason
from pytest_vla.report.shards import Shard, run_episodes
from pytest_vla.suites.base import Observation, StateConvention, Suite

SETTLE_CHECK_STEPS = 10  # idle steps after the reset's settle steps, over which objects must not move
SETTLE_TOLERANCE_M = 0.005  # 5 mm: at rest under MuJoCo 3.3.2 they move 0.00 mm; misplaced ones fall centimetres
BLANK_STD = 1.0  # a frame whose pixels vary less than this (0..255) shows nothing
TIMED_STEPS = 10  # steps timed on the rendering env
Settled = tuple[float, float, float]  # a settle check's env build, reset and physics step seconds


@dataclass(frozen=True)
class ProbeSpec:
    """What the controller asks the probe to check; paths are files in the probe's directory."""

    suite: str  # the pickled suite object
    selection: list[str]
    num_episodes: int
    repeat: int
    shard: dict[str, int] | None
    cameras: list[str]  # rendered and checked; empty: physics only
    seed: int
    state: dict[str, str]  # the policy's StateConvention, as option -> choice
    sweep: bool  # check every selected task's scene at rest (else the first task's only)
    processes: int  # the sweep's processes: the run's local workers, as many envs as it holds at once
    render_backend: str
    stages: str
    result: str
    observation: str  # the first task's first observation, pickled, for the controller's policy query

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def read(cls, path: Path) -> ProbeSpec:
        return cls(**json.loads(path.read_text()))


class _Failed(Exception):
    def __init__(self, failure: PreflightFailure, message: str, remedy: str | None = None) -> None:
        super().__init__(message)
        self.failure = failure
        self.remedy = remedy

    def __reduce__(self) -> tuple[type[_Failed], tuple[PreflightFailure, str, str | None]]:
        return _Failed, (self.failure, str(self), self.remedy)  # raised in a sweep process, re-raised here


class Probe:
    def __init__(self, spec: ProbeSpec) -> None:
        self.spec = spec
        self.started = time.perf_counter()
        self.first_observation: Observation | None = None  # the first task's, for the policy

    def stage(self, name: str) -> None:
        with open(self.spec.stages, "a", encoding="utf-8") as stages:
            stages.write(name + "\n")

    @functools.cached_property
    def suite(self) -> Suite:
        return pickle.loads(Path(self.spec.suite).read_bytes())

    def run(self) -> dict[str, Any]:
        """The result as JSON: a PreflightResult, or ``{"selection_error": ...}`` for a bad --vla-tasks."""
        try:
            return self._checks().to_json()
        except _Failed as exc:
            return failed(
                exc.failure,
                str(exc),
                elapsed_s=self._elapsed(),
                render_backend=self.spec.render_backend,
                remedy=exc.remedy,
                remedies=self.suite.remedies,
            ).to_json()
        except SuiteError as exc:
            return {"selection_error": str(exc)}

    def _checks(self) -> PreflightResult:
        self.stage("versions")
        suite = self.suite
        conflict = version_conflict(suite.requirements)
        if conflict:
            message, wanted = conflict
            raise _Failed(PreflightFailure.DEP_VERSION_CONFLICT, message, f"pip install '{wanted}'")
        self.stage("import")
        started = time.perf_counter()
        with _classified("importing the simulation stack", self.spec.render_backend):
            tasks = suite.resolve_tasks(self.spec.selection)
            # What the controller's export check reads next: it imports only what imported here.
            suite.observation_shapes(tasks[0])
            suite.objects_of_interest(tasks[0])
        import_s = time.perf_counter() - started
        firsts = list(_first_episodes(tasks, self.spec.num_episodes, self.spec.repeat, self.spec.shard).values())
        state = StateConvention.of(self.spec.state)
        # The first task's physics-only build also imports the simulator: it is timed apart.
        first_task, first_episode = firsts[0]
        settles = [self._settle(suite, first_task, first_episode, state)]
        if not self.spec.cameras:
            self._keep_observation()
        sweep = firsts[1:] if self.spec.sweep else []
        with self._sweep_processes(len(sweep)) as pool:
            if self.spec.cameras:
                env_build_s, reset_s, render_step_s = self._rendering(suite, first_task, first_episode, state)
            settles += self._sweep(pool, suite, sweep, state)
        later_builds = [build for build, _, _ in settles[1:]] or [self._build_again(suite, first_task, state)]
        build_s = _median(later_builds)
        import_s += max(settles[0][0] - build_s, 0.0)
        step_s = _median([step for _, _, step in settles])
        render_s = None
        if self.spec.cameras:
            render_s = max(render_step_s - step_s, 0.0) / len(self.spec.cameras)
        else:
            env_build_s, reset_s = build_s, _median([reset for _, reset, _ in settles])
        timings = PreflightTimings(import_s, env_build_s, reset_s, step_s, render_s, None)
        cameras = f"{', '.join(self.spec.cameras)} rendered and not blank, " if self.spec.cameras else ""
        checked = [task for task, _ in firsts[: len(settles)]]
        watched = sum(1 for task in checked if suite.objects_of_interest(task))
        if watched == len(checked):
            settle = f"{len(checked)} task(s) at rest after the settle steps"
        else:  # a suite that names no objects to watch (MetaWorld, ALOHA): nothing is claimed at rest
            settle = f"{len(checked)} task(s) stepped idle, {watched} with objects watched and at rest"
        message = f"{first_task.key} built and reset, {cameras}{settle} (MUJOCO_GL={self.spec.render_backend})"
        return PreflightResult(
            True, None, message, self._elapsed(), timings, self.spec.render_backend,
            tuple(self.spec.cameras), tuple(task.key for task in checked),
        )  # fmt: skip

    def _rendering(
        self, suite: Suite, task: TaskSpec, episode: int, state: StateConvention
    ) -> tuple[float, float, float]:
        """Build, reset and step the env with the run's cameras; (build s, reset s, step s with rendering)."""
        where = f"rendering {task.key}"
        self.stage(f"build {task.key}")
        started = time.perf_counter()
        with _classified(f"building {task.key} with cameras {', '.join(self.spec.cameras)}", self.spec.render_backend):
            env = suite.make_env(task, self.spec.cameras, self.spec.seed, state)
        build_s = time.perf_counter() - started
        try:
            self.stage(f"reset {task.key}")
            started = time.perf_counter()
            with _classified(f"resetting {task.key}", self.spec.render_backend):
                observation = env.reset(episode)
            reset_s = time.perf_counter() - started
            self._check_frames(observation, task)
            self.first_observation = observation
            self._keep_observation()
            self.stage(f"render {task.key}")
            started = time.perf_counter()
            with _classified(where, self.spec.render_backend):
                for _ in range(TIMED_STEPS):
                    observation, _ = env.step(np.asarray(suite.idle_action, dtype=np.float64))
            step_s = (time.perf_counter() - started) / TIMED_STEPS
            self._check_frames(observation, task)
        finally:
            env.close()
        return build_s, reset_s, step_s

    def _check_frames(self, observation: Observation, task: TaskSpec) -> None:
        for camera in self.spec.cameras:
            image = np.asarray(observation.images[camera])
            if float(image.std()) < BLANK_STD:
                raise _Failed(
                    PreflightFailure.EGL_BLACK_FRAMES,
                    f"camera {camera} of {task.key} renders a blank frame (every pixel about {image.mean():.0f}) "
                    f"under MUJOCO_GL={self.spec.render_backend}",
                )

    def _build_again(self, suite: Suite, task: TaskSpec, state: StateConvention) -> float:
        """Seconds to build ``task``'s physics-only env with the stack imported (the first build imported it)."""
        self.stage(f"settle {task.key}")
        started = time.perf_counter()
        with _classified(f"building {task.key} (physics only)", self.spec.render_backend):
            suite.make_env(task, (), self.spec.seed, state).close()
        return time.perf_counter() - started

    def _keep_observation(self) -> None:
        """Write the first observation; its file also tells the controller the first env built and reset."""
        assert self.first_observation is not None
        observation = Path(self.spec.observation)
        partial = observation.with_name(observation.name + ".partial")
        partial.write_bytes(pickle.dumps(self.first_observation))
        partial.replace(observation)  # whole or absent: the controller polls for it

    def _settle(self, suite: Suite, task: TaskSpec, episode: int, state: StateConvention) -> Settled:
        self.stage(f"settle {task.key}")
        settled, observation = _at_rest(suite, task, episode, self.spec.seed, state, self.spec.render_backend)
        if self.first_observation is None:  # without cameras, the policy's observation
            self.first_observation = observation
        return settled

    @contextlib.contextmanager
    def _sweep_processes(self, tasks: int) -> Iterator[ProcessPoolExecutor | None]:
        """Processes for the settle sweep, forked now: before the rendering env starts threads in this
        process, which a fork would copy mid-use."""
        processes = min(self.spec.processes, tasks)
        if processes < 2:
            yield None
            return
        with ProcessPoolExecutor(processes, mp_context=multiprocessing.get_context("fork")) as pool:
            pool.submit(int).result()  # under fork, the first task starts all the processes
            yield pool

    def _sweep(
        self,
        pool: ProcessPoolExecutor | None,
        suite: Suite,
        sweep: Sequence[tuple[TaskSpec, int]],
        state: StateConvention,
    ) -> list[Settled]:
        """Each task's scene at rest, in run order; with a pool, as many at once as it has processes."""
        if pool is None:
            return [self._settle(suite, task, episode, state) for task, episode in sweep]
        waiting = list(sweep)
        running: dict[futures.Future[Settled], TaskSpec] = {}
        settled: dict[str, Settled] = {}
        while waiting or running:
            # No more checks than processes are handed out: those handed out are the ones running.
            while waiting and len(running) < self.spec.processes:
                task, episode = waiting.pop(0)
                check = pool.submit(_settled, suite, task, episode, self.spec.seed, state, self.spec.render_backend)
                running[check] = task
            checking = ", ".join(task.key for task in running.values())
            self.stage(f"settle {checking}")
            done, _ = futures.wait(running, return_when=futures.FIRST_COMPLETED)
            for check in done:
                task = running.pop(check)
                try:
                    settled[task.key] = check.result()  # a failure, raised as the check raised it
                except BrokenProcessPool:
                    died = f"a process checking {checking} settles died"
                    raise _Failed(PreflightFailure.IMPORT_ERROR, died) from None
        return [settled[task.key] for task, _ in sweep]

    def _elapsed(self) -> float:
        return time.perf_counter() - self.started


def _at_rest(
    suite: Suite, task: TaskSpec, episode: int, seed: int, state: StateConvention, render_backend: str
) -> tuple[Settled, Observation]:
    """Check ``task``'s goal objects stay put after the reset; the timings and the reset's observation."""
    started = time.perf_counter()
    with _classified(f"building {task.key} (physics only)", render_backend):
        env = suite.make_env(task, (), seed, state)
    build_s = time.perf_counter() - started
    try:
        started = time.perf_counter()
        with _classified(f"resetting {task.key}", render_backend):
            at_reset = observation = env.reset(episode)
        reset_s = time.perf_counter() - started
        before = at_reset.objects_of_interest.copy()
        started = time.perf_counter()
        with _classified(f"stepping {task.key}", render_backend):
            for _ in range(SETTLE_CHECK_STEPS):
                observation, _ = env.step(np.asarray(suite.idle_action, dtype=np.float64))
        step_s = (time.perf_counter() - started) / SETTLE_CHECK_STEPS
    finally:
        env.close()
    moved = np.linalg.norm(observation.objects_of_interest - before, axis=1) if len(before) else np.zeros(0)
    if len(moved) and float(moved.max()) > SETTLE_TOLERANCE_M:
        name = suite.objects_of_interest(task)[int(moved.argmax())]
        raise _Failed(
            PreflightFailure.SCENE_SETTLE,
            f"{task.key} episode {episode}: {name} moved {100 * float(moved.max()):.1f} cm in "
            f"{SETTLE_CHECK_STEPS} idle steps after the settle steps (at rest: under "
            f"{1000 * SETTLE_TOLERANCE_M:g} mm)",
        )
    return (build_s, reset_s, step_s), at_reset


def _settled(
    suite: Suite, task: TaskSpec, episode: int, seed: int, state: StateConvention, render_backend: str
) -> Settled:
    """``_at_rest`` in a sweep process: the timings only."""
    return _at_rest(suite, task, episode, seed, state, render_backend)[0]


def version_conflict(requirements: Mapping[str, str]) -> tuple[str, str] | None:
    """The first installed package outside the suite's window or its stack's declared ranges, and the requirement.

    None when every installed package is inside.

    Only installed packages are judged: a missing one is the import's to report.
    """
    for name, window in requirements.items():
        found = _installed(name)
        if found is not None and not SpecifierSet(window).contains(found, prereleases=True):
            return f"{name} {found} is installed; the protocol is defined on {name}{window}", f"{name}{window}"
    for name in requirements:
        if _installed(name) is None:
            continue
        for text in metadata.requires(name) or []:
            try:
                requirement = Requirement(text)
            except InvalidRequirement:
                continue
            if requirement.marker is not None and not requirement.marker.evaluate({"extra": ""}):
                continue
            found = _installed(requirement.name)
            if found is not None and not requirement.specifier.contains(found, prereleases=True):
                wanted = f"{requirement.name}{requirement.specifier}"
                return f"{requirement.name} {found} is installed; {name} {_installed(name)} requires {wanted}", wanted
    return None


def _median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def _installed(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _first_episodes(
    tasks: Sequence[TaskSpec], num_episodes: int, repeat: int, shard: dict[str, int] | None
) -> dict[str, tuple[TaskSpec, int]]:
    """This job's tasks in run order, each with the first of its episodes the job runs."""
    episodes = run_episodes(tasks, num_episodes, repeat)
    if shard is not None:
        episodes = Shard.from_json(shard).share(episodes)
    by_key = {task.key: task for task in tasks}
    firsts: dict[str, tuple[TaskSpec, int]] = {}
    for episode in episodes:
        firsts.setdefault(episode.task_key, (by_key[episode.task_key], episode.episode_index))
    return firsts


class _classified:
    """Turn what a stage raises into a classified failure naming what was being done."""

    def __init__(self, doing: str, render_backend: str) -> None:
        self.doing = doing
        self.render_backend = render_backend

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, _tb: Any) -> bool:
        if exc is None or isinstance(exc, _Failed | SuiteError) or not isinstance(exc, Exception):
            return False
        raise _Failed(classify(exc, self.render_backend), f"{self.doing}: {one_line(exc)}") from exc


def classify(exc: BaseException, render_backend: str) -> PreflightFailure:
    """The failure class of an exception the stack raised."""
    text = f"{type(exc).__name__} {exc}"
    if isinstance(exc, EOFError) or "reading from stdin" in text:
        return PreflightFailure.INPUT_HANG  # a prompt: the probe's stdin is empty
    if "weights_only" in text:
        return PreflightFailure.DEP_VERSION_CONFLICT  # torch >= 2.6 refuses the init-state pickles
    rendering = isinstance(exc, EnvFailure) and exc.terminal_reason == TerminalReason.RENDERING_FAILURE
    if render_backend == "egl" and (rendering or "egl" in text.lower()):
        return PreflightFailure.EGL_DEVICE
    return PreflightFailure.IMPORT_ERROR


def main(spec_path: str) -> int:
    spec = ProbeSpec.read(Path(spec_path))
    result = Probe(spec).run()
    Path(spec.result).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
