"""The controller's side of one run: the plan, the rows that come back, report.json and the verdict.

Without xdist the controller is also the process that runs the episodes; with xdist it only
aggregates what the workers report.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import uuid
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pytest_vla.controller.exit_status import RunVerdict, exit_status, gate_line
from pytest_vla.controller.items import PREFLIGHT_ENV_KEY, PREFLIGHT_POLICY_KEY
from pytest_vla.controller.junit import finish_junit, testcase_address
from pytest_vla.controller.options import Settings, read_settings, runs_episodes
from pytest_vla.controller.placement import choose_render_backend, device_environment, visible_gpus
from pytest_vla.controller.preflight import PreflightFailed, make_suite, run_preflight
from pytest_vla.controller.progress import Progress
from pytest_vla.errors import ReportError, VlaWarning
from pytest_vla.plan import EvalPlan
from pytest_vla.preflight.cost import CostEstimate, TaskWork, estimate_cost
from pytest_vla.preflight.result import PreflightResult
from pytest_vla.report.compare import Comparison, Verdict, check_comparable, compare, comparison_lines, read_comparable
from pytest_vla.report.html import write_html
from pytest_vla.report.journal import Journal, read_journal
from pytest_vla.report.layout import OutputLayout, relocated
from pytest_vla.report.reader import compatible_rows, load_report
from pytest_vla.report.schema import EpisodeId, EpisodeRow, TerminalReason, episode_row
from pytest_vla.report.stats import scipy_stats
from pytest_vla.report.summary import summary_lines
from pytest_vla.report.writer import Invocation, ReportWriter, RunInfo, write_json_atomically
from pytest_vla.rollout.threads import available_cpus
from pytest_vla.rollout.watchdog import clear_notes, read_note
from pytest_vla.suites.base import Suite


@dataclass(frozen=True)
class RunSetup:
    """What a run settles before any process starts: xdist places its workers by it, the preflight runs by it."""

    settings: Settings
    gpus: list[str]  # what xdist workers are pinned to, round robin; empty: no GPU
    probe_env: dict[str, str]  # the preflight process's environment: the first worker's

    @classmethod
    def read(cls, config: pytest.Config) -> RunSetup:
        settings = read_settings(config)
        choose_render_backend(settings.render)  # before anything imports MuJoCo
        gpus = list(settings.gpus) if settings.gpus is not None else visible_gpus()
        probe_env = {**os.environ, **(device_environment(gpus[0]) if gpus else {})}
        if gpus and not _distributed(config):
            # This process runs the episodes: pinned before the preflight's session starts CUDA.
            os.environ.update(device_environment(gpus[0]))
        return cls(settings, gpus, probe_env)


@dataclass(frozen=True)
class WorkerDeath:
    """How an xdist worker went down, as the controller saw it."""

    how: str  # "killed by SIGKILL", "exit code 3", ...
    cuda_visible_devices: str | None  # the worker's GPU pin


class ControllerRun:
    def __init__(
        self, config: pytest.Config, plan: EvalPlan, writer: ReportWriter, settings: Settings, gpus: list[str]
    ) -> None:
        self.config = config
        self.plan = plan
        self.writer = writer
        self.layout = OutputLayout(plan.output)
        self.journal = Journal(self.layout.journal)
        # Whether this run may write over the output directory's results: they are its own, or an
        # earlier report it continues (--vla-resume, --lf); else they are moved aside first.
        self._output_claimed = False
        self.settings = settings
        self.gpus = gpus  # what xdist workers are pinned to, round robin; empty: no GPU
        self.notes: list[str] = []  # header lines about what an earlier report contributed
        self.worker_deaths: dict[str, WorkerDeath] = {}  # xdist worker id -> how it died
        self._selected: list[EpisodeId] = []
        self.progress = Progress(0)  # sized when the selection is known
        self._other_failures: set[str] = set()  # failed tests of the user's own beside the episodes
        self._unrecorded: dict[str, str] = {}  # episode node id -> what pytest reported without a row
        self._expected_failures: set[EpisodeId] = set()  # xfail-marked episodes that failed
        self.estimate: CostEstimate | None = None  # from the preflight's timings
        self.baseline: dict[str, Any] | None = None  # --vla-baseline's report
        self.comparison: Comparison | None = None  # against it, once the episodes are done
        self.comparison_error: str | None = None  # why there is none, when there is a baseline

    @classmethod
    def start(cls, config: pytest.Config, setup: RunSetup) -> ControllerRun:
        """Check everything that can be checked before an episode; raise a one-line UsageError."""
        settings, gpus = setup.settings, setup.gpus
        suite = make_suite(config, settings.suite)
        if settings.seed is None:
            settings = dataclasses.replace(settings, seed=suite.default_seed)
        try:
            checked = run_preflight(
                config,
                suite,
                settings,
                explicit_paths=_explicit_paths(config),
                probe_env=setup.probe_env,
                workers=_worker_count(config),
                runs_here=not _distributed(config),
            )
        except PreflightFailed as exc:
            _record_failed_preflight(config, settings, suite, exc.identity, exc.result)
            raise pytest.UsageError(exc.result.line()) from None
        # The run's id travels in the plan to every worker, and into their watchdogs' notes.
        plan = dataclasses.replace(checked.plan, run_id=uuid.uuid4().hex)
        clear_notes(OutputLayout(plan.output))
        if settings.gpus is not None and plan.provider != "CUDAExecutionProvider":
            config.issue_config_time_warning(
                VlaWarning(
                    f"--vla-gpus {','.join(settings.gpus)}: inference runs on {plan.provider}, this onnxruntime "
                    "has no usable CUDA; the processes stay pinned and each row records its pin"
                ),
                stacklevel=2,
            )
        if _distributed(config):
            checked.policy.close()  # the workers make their own: a server's connection is not held idle
        else:
            config.stash[PREFLIGHT_POLICY_KEY] = checked.policy
            if checked.first_env is not None:
                config.stash[PREFLIGHT_ENV_KEY] = checked.first_env
        # The tallies' scipy, imported before the run (the probe's wait imported it, unless the preflight was
        # reused): at its first write with rows it would stall the run mid-way.
        scipy_stats()
        run = cls(config, plan, ReportWriter(_run_info(config, plan, suite), plan.output), settings, gpus)
        run._carry_earlier_rows(suite.protocol())
        if settings.baseline is not None:
            run.baseline = _read_baseline(settings.baseline, run.writer.build())
        run.estimate = run._estimate(checked.steps_per_query)
        run.writer.preflight = plan.preflight.to_json() if plan.preflight else None
        run.writer.cost = run.estimate.to_report() if run.estimate else None
        return run

    def _estimate(self, steps_per_query: int) -> CostEstimate | None:
        """The run's cost from the preflight's timings: the episodes still to run (after --vla-resume)."""
        preflight = self.plan.preflight
        if preflight is None or preflight.timings is None:
            return None
        finished = set(self.plan.finished)
        episodes: dict[str, int] = {}
        for episode in self.plan.episodes():
            if episode not in finished:
                episodes[episode.task_key] = episodes.get(episode.task_key, 0) + 1
        work = [
            TaskWork(task, episodes[task.key], self.plan.max_steps(task))
            for task in self.plan.tasks
            if task.key in episodes
        ]
        return estimate_cost(
            work,
            preflight.timings,
            workers=_worker_count(self.config),
            cpus=available_cpus(),
            cameras=len(preflight.cameras),
            steps_per_query=steps_per_query,
            shared_rendering=preflight.render_backend == "osmesa",
            hourly_usd=self.settings.gpu_hourly_usd,
            devices=max(len(self.gpus), 1),
        )

    def _carry_earlier_rows(self, suite_protocol: dict[str, Any]) -> None:
        """--vla-resume and --lf continue an earlier report instead of replacing it with a fraction of it.

        ``--vla-resume`` keeps the earlier rows except harness errors (a crash is rerun) and runs
        the rest; ``--lf`` keeps them all and lets its reruns replace theirs. A report of another
        policy, seed or protocol is refused by ``--vla-resume`` and replaced by ``--lf``.
        """
        if not (self.settings.resume or self.config.getoption("lf", False)):
            return
        path = self.layout.report_json
        if not path.is_file():
            return
        protocol = {**suite_protocol, "max_steps_override": self.plan.max_steps_override}
        planned = set(self.plan.episodes())
        try:
            earlier = compatible_rows(
                path,
                load_report(path),
                suite=self.plan.suite,
                seed=self.plan.seed,
                protocol=protocol,
                policy=self.plan.policy_identity,
            )
            if self.layout.journal.is_file():
                # The journal's rows are the report's run's (or its continuations'): report.json
                # lags them by up to REWRITE_EVERY_S when the run was killed.
                journal_rows, torn = read_journal(self.layout.journal)
                if torn is not None:
                    self.notes.append(f"vla: {torn}")
                earlier = [*earlier, *journal_rows]
        except ReportError as exc:
            if self.settings.resume:
                raise _usage_error("--vla-resume", exc) from None
            self.notes.append(f"vla: --lf: the earlier report is not continued ({exc.problems[0]})")
            return
        self._output_claimed = True
        latest = {EpisodeId.of_row(row): row for row in earlier}  # the last row of each episode decides
        kept = [row for episode, row in latest.items() if episode in planned]
        if self.settings.resume:
            kept = [row for row in kept if not TerminalReason(row["terminal_reason"]).is_harness_error]
            finished = tuple(EpisodeId.of_row(row) for row in kept)
            self.plan = dataclasses.replace(self.plan, finished=finished)
            self.notes.append(
                f"vla: --vla-resume: {len(kept)} finished episodes of {path} kept, {len(planned) - len(kept)} to run"
            )
        else:
            self.notes.append(f"vla: --lf: {len(kept)} episodes of {path} kept; the reruns replace theirs")
        for row in kept:
            self.writer.add(row)

    def expect(self, nodeids: Iterable[str]) -> None:
        """The selected items (after -k, -m, --lf): episodes among them that never report are missing."""
        selected = [EpisodeId.from_nodeid(self.plan.suite, nodeid) for nodeid in nodeids]
        self._selected = [episode for episode in selected if episode is not None]
        self.progress = Progress(len(self._selected))
        self.writer.expect(self._selected)
        if runs_episodes(self.config):
            self._claim_output()
            # A valid, partial report.json exists from the start: a run killed before its first
            # episode still says what it was going to run.
            self.write()

    def _claim_output(self) -> None:
        """Make the output directory this run's: raises a UsageError, leaving it untouched, when it cannot."""
        if not self._output_claimed:
            self._move_earlier_results_aside()
            self._output_claimed = True

    def _move_earlier_results_aside(self) -> None:
        """An earlier run's results are never overwritten: they move to ``previous/<its start>/``, said in one line."""
        xml_path = getattr(self.config.option, "xmlpath", None)
        paths = self.layout.results(Path(xml_path) if xml_path else None)
        if not paths or (paths == [self.layout.report_json] and not _holds_results(self.layout)):
            return  # nothing, or only a report of no episodes (a failed preflight's): replaced
        try:
            earlier: dict[str, Any] | None = load_report(self.layout.report_json)
        except ReportError:
            earlier = None
        try:
            target = self.layout.move_aside(paths, earlier.get("started_at") if earlier else None)
        except OSError as exc:
            raise pytest.UsageError(
                f"--vla-output {self.plan.output} holds an earlier run's results, which could not be moved aside "
                f"({exc}): move them yourself, or pass --vla-resume to continue that run"
            ) from None
        if earlier is not None:  # its rows and page name its videos and trajectories where they are now
            moved = OutputLayout(target)
            report = relocated(earlier, self.layout.root, target)
            try:
                write_json_atomically(moved.report_json, report)
                if moved.report_html.exists():
                    write_html(report, target)
            except Exception as exc:  # a report of any shape may lie there; its files are kept all the same
                warnings.warn(VlaWarning(f"{target}: the moved report's paths not updated: {exc}"), stacklevel=2)
        line = (
            f"vla: the earlier run's {', '.join(path.name for path in paths)} moved to {target} "
            "(--vla-resume continues a run instead)"
        )
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(line)

    def header_lines(self) -> list[str]:
        plan = self.plan
        items = f"{len(plan.tasks) * plan.num_episodes * plan.repeat} items"
        trials = f" x {plan.repeat} trials" if plan.repeat > 1 else ""
        if plan.shard:
            items += f" (shard {plan.shard} from {self.settings.shard_source}: {len(plan.episodes())} of them)"
        return [
            *self.notes,
            f"vla: {plan.policy.describe()}"
            + ("" if plan.provider in plan.policy.describe() else f" on {plan.provider}"),
            f"vla: suite {plan.suite}, {len(plan.tasks)} tasks x {plan.num_episodes} episodes{trials} = {items}, "
            f"seed {plan.seed}, cameras rendered: {', '.join(plan.cameras) or 'none'}, "
            f"MUJOCO_GL={os.environ.get('MUJOCO_GL', 'osmesa')}",
            *([plan.preflight.line()] if plan.preflight else []),
            *(self.estimate.lines()[:1] if self.estimate else []),
        ]

    def preview_lines(self) -> list[str]:
        """What --vla-cost-preview prints: the preflight, the selection per family, the estimate and its assumptions."""
        lines = [line for line in self.header_lines() if not line.startswith("vla: estimate")]
        for family in self.plan.families:
            tasks = [task for task in self.plan.tasks if task.family == family]
            budgets = sorted({self.plan.max_steps(task) for task in tasks})
            lines.append(
                f"vla:   {family}: {len(tasks)} tasks x {self.plan.num_episodes} episodes"
                + (f" x {self.plan.repeat} trials" if self.plan.repeat > 1 else "")
                + ", "
                f"{'/'.join(map(str, budgets))} steps each at most"
            )
        return lines + (
            self.estimate.lines() if self.estimate else ["vla: no estimate: the preflight measured nothing"]
        )

    def confirm_cost(self) -> None:
        """Above --vla-max-cost-usd: ask on a terminal, refuse without one, unless --vla-yes."""
        estimate, limit = self.estimate, self.settings.max_cost_usd
        if estimate is None or estimate.usd <= limit or self.settings.yes:
            return
        question = (
            f"vla: this run is estimated at ${estimate.usd:.2f}, above --vla-max-cost-usd {limit:g}. Run it? [y/N] "
        )
        capture = self.config.pluginmanager.get_plugin("capturemanager")
        if capture is not None:
            capture.suspend_global_capture(in_=True)  # stdin included: the terminal is asked
        try:
            answer = input(question).strip().lower() if sys.stdin.isatty() else None
        finally:
            if capture is not None:
                capture.resume_global_capture()
        if answer is None:
            raise pytest.UsageError(
                f"estimated cost ${estimate.usd:.2f} is above --vla-max-cost-usd {limit:g} and no one is here to "
                "confirm: pass --vla-yes, raise the limit, or select less (--vla-cost-preview shows the estimate)"
            )
        if answer not in ("y", "yes"):
            raise pytest.UsageError(f"not run: estimated cost ${estimate.usd:.2f} was not confirmed")

    def record(self, report: pytest.TestReport) -> str | None:
        """Take a report's row into report.json; return the progress tally line when one is due."""
        row: EpisodeRow | None = getattr(report, "vla_episode", None)
        if row is None and report.failed:
            episode = EpisodeId.from_nodeid(self.plan.suite, report.nodeid)
            if episode is None:
                self._other_failures.add(report.nodeid)
            elif report.when == "???":  # xdist's report for an item whose worker died: no row came back
                row = self._crashed_worker_row(episode, report)
            else:  # something beside the episode failed (a hook, a fixture): the result cannot be trusted
                self._unrecorded[report.nodeid] = _reason(report)
        if row is None:
            return None
        episode = EpisodeId.of_row(row)
        if getattr(report, "wasxfail", None) is not None:
            self._expected_failures.add(episode)
        self.writer.add(row)
        self.journal.append(row)  # on disk now; report.json follows within REWRITE_EVERY_S, and at the end
        self.writer.write_if_due(self._modify_report)
        if report.outcome == "rerun":  # pytest-rerunfailures: only an episode's last attempt is finished
            return None
        self.config.hook.pytest_vla_episode_finished(config=self.config, episode=dict(row))
        return self.progress.finished(row)

    def write(self) -> dict[str, Any]:
        return self.writer.write(self._modify_report)

    def _modify_report(self, report: dict[str, Any]) -> None:
        self.config.hook.pytest_vla_modify_report(config=self.config, report=report)

    def finish(self, pytest_status: int, junit_path: Path | None) -> int:
        """The last report write, the HTML page, the JUnit clean-up and the exit status, whatever happened before."""
        try:
            self._claim_output()  # already done, unless the run never got to its items (a collection error)
        except pytest.UsageError as exc:  # nothing is written over the earlier results
            warnings.warn(VlaWarning(f"report.json not written: {exc}"), stacklevel=2)
            return exit_status(pytest_status, self._verdict())
        if self.baseline is not None:
            self._compare_with_baseline()
        self.journal.close()
        report = self.write()
        try:
            write_html(report, self.plan.output)
        except OSError as exc:  # the numbers are in report.json: a page is not worth the verdict
            warnings.warn(VlaWarning(f"report.html not written: {exc}"), stacklevel=2)
        if junit_path is not None and junit_path.is_file():  # written by junitxml's sessionfinish, before this
            prefix = self.config.getoption("junitprefix", None)
            addresses = {
                testcase_address(EpisodeId.of_row(row).nodeid(self.plan.suite), prefix): row for row in self.writer.rows
            }
            finish_junit(junit_path, addresses, str(self.config.getini("junit_family")))
        return exit_status(pytest_status, self._verdict())

    def _compare_with_baseline(self) -> None:
        assert self.settings.baseline is not None and self.baseline is not None
        try:
            self.comparison = compare(
                self.baseline,
                self.writer.build(),
                margin=self.settings.max_regression_pp / 100,
                base_name=str(self.settings.baseline),
                new_name=str(self.writer.path),
            )
        except ReportError as exc:
            self.comparison_error = "; ".join(exc.problems)
            return
        self.writer.comparison = self.comparison.to_json()

    def _verdict(self) -> RunVerdict:
        regressed = None
        if self.baseline is not None:  # no comparison at all is no evidence that nothing regressed
            regressed = self.comparison is None or self.comparison.overall.verdict is Verdict.REGRESSED
        return RunVerdict(
            rows=self.writer.rows,
            min_success_rate=self.settings.min_success_rate,
            regressed=regressed,
            missing=len(self.writer.missing),
            other_failures=len(self._other_failures),
            unrecorded=len(self._unrecorded),
            expected_failures=self._expected_failures,
            nothing_left=len(self.plan.finished) == len(self.plan.episodes()),
        )

    def summary(self) -> list[str]:
        lines = summary_lines(self.writer.build(), self.writer.path)
        missing = self.writer.missing
        if missing:
            lines.append(
                f"not run: {len(missing)} of {len(self._selected)} selected episodes "
                f"(first: {missing[0].nodeid(self.plan.suite)}); report.json is partial"
            )
        for nodeid, reason in self._unrecorded.items():
            lines.append(f"error outside the episode, no result recorded: {nodeid}: {reason}")
        if self.settings.min_success_rate is not None:
            lines.append(gate_line(self.writer.rows, self.settings.min_success_rate))
        if self.comparison is not None:
            lines.append("")
            lines.append(f"against --vla-baseline {self.settings.baseline}:")
            lines.extend(comparison_lines(self.comparison))
        elif self.comparison_error is not None:
            lines.append(f"--vla-baseline {self.settings.baseline}: no comparison: {self.comparison_error}")
        return lines

    def _crashed_worker_row(self, episode: EpisodeId, report: pytest.TestReport) -> EpisodeRow:
        """The row of an episode whose worker process died under it (segfault, OOM kill, watchdog)."""
        worker = getattr(getattr(getattr(report, "node", None), "gateway", None), "id", "?")
        death = self.worker_deaths.get(worker, WorkerDeath("no exit status", None))
        task = next(task for task in self.plan.tasks if task.key == episode.task_key)
        stuck = read_note(self.layout, worker, self.plan.run_id)
        if stuck is not None and stuck.phase == "episode":
            reason = TerminalReason.TIMEOUT
            message = (
                f"wall-clock timeout: stuck past {stuck.limit_s:g} s inside the simulator or the model; "
                f"the watchdog ended worker {worker} and xdist replaced it"
            )
        elif stuck is not None:
            reason = TerminalReason.ADAPTER_ERROR
            message = f"{stuck.what} was stuck past {stuck.limit_s:g} s; the watchdog ended worker {worker}"
        else:
            reason = TerminalReason.ADAPTER_ERROR
            message = f"worker {worker} died while running this episode ({death.how}); xdist replaced it"
        return episode_row(
            episode,
            reason=reason,
            instruction=task.instruction,
            max_steps=self.plan.max_steps(task),
            worker=worker,
            error_message=message,
            cuda_visible_devices=death.cuda_visible_devices,
        )


def _run_info(config: pytest.Config, plan: EvalPlan, suite: Suite) -> RunInfo:
    protocol = {
        **suite.protocol(),
        "seed": plan.seed,
        "num_episodes_per_task": plan.num_episodes,
        "max_steps_override": plan.max_steps_override,
        "cameras_rendered": list(plan.cameras),
        # Whose observation and action handling the policy got: pytest-vla's in-process one, or a
        # server protocol's own LIBERO client's (vla-eval's, openpi's), reproduced exactly.
        "policy_client": plan.policy.protocol if plan.policy.server is not None else "in-process",
    }
    return RunInfo(
        suite=plan.suite,
        seed=plan.seed,
        tasks=plan.tasks,
        num_episodes=plan.num_episodes,
        repeat=plan.repeat,
        protocol=protocol,
        provider=plan.provider,
        workers=_worker_count(config),
        policy=plan.policy_identity,
        shard=plan.shard,
        invocation=Invocation(list(config.invocation_params.args), str(config.invocation_params.dir)),
    )


def _record_failed_preflight(
    config: pytest.Config, settings: Settings, suite: Suite, identity: dict[str, Any], result: PreflightResult
) -> None:
    """A report.json that says why no episode ran, unless an earlier run's results are there: they are kept."""
    if _holds_results(OutputLayout(settings.output)):
        return
    info = RunInfo(
        suite=suite.name,
        seed=settings.seed,
        tasks=(),
        num_episodes=settings.num_episodes,
        repeat=settings.repeat,
        protocol={**suite.protocol(), "seed": settings.seed, "num_episodes_per_task": settings.num_episodes},
        provider="",
        workers=_worker_count(config),
        policy=identity,
        shard=settings.shard,
        invocation=Invocation(list(config.invocation_params.args), str(config.invocation_params.dir)),
    )
    writer = ReportWriter(info, settings.output)
    writer.preflight = result.to_json()
    writer.write(lambda report: config.hook.pytest_vla_modify_report(config=config, report=report))


def _read_baseline(path: Path, report: dict[str, Any]) -> dict[str, Any]:
    """The baseline's report, refused before any episode runs when this run's episodes cannot pair with its."""
    try:
        baseline = read_comparable(path)
        check_comparable(baseline, report)
    except ReportError as exc:
        raise _usage_error(f"--vla-baseline {path}", exc) from None
    except OSError as exc:
        raise pytest.UsageError(f"--vla-baseline {path}: {exc}") from None
    return baseline


def _usage_error(option: str, exc: ReportError) -> pytest.UsageError:
    """One line per problem of a refused report, each naming the option: pytest prints the first as ``ERROR:``."""
    return pytest.UsageError("\n".join(f"{option}: {problem}" for problem in exc.problems))


def _holds_results(layout: OutputLayout) -> bool:
    """Whether an earlier run left episodes here: a journal, or a report.json that is not an empty pytest-vla one.

    An empty one (a failed preflight, a run killed before its first episode) is replaced; a file
    that is not a report at all is kept, since it is not ours to destroy.
    """
    if layout.journal.exists() or layout.journal.is_symlink():
        return True
    if not layout.report_json.exists():
        return False
    try:
        return load_report(layout.report_json).get("episodes") != []
    except ReportError:
        return True


def _reason(report: pytest.TestReport) -> str:
    """The one line pytest would print for a failed report: the exception, else the first line."""
    crash = getattr(report.longrepr, "reprcrash", None)
    if crash is not None:
        return " ".join(crash.message.split())
    return next((line.strip() for line in report.longreprtext.splitlines() if line.strip()), f"failed in {report.when}")


def _explicit_paths(config: pytest.Config) -> bool:
    """Whether the user named test paths; if not, pytest-vla runs episodes only (no testpaths, no cwd)."""
    return config.args_source == pytest.Config.ArgsSource.ARGS


def _distributed(config: pytest.Config) -> bool:
    return config.getoption("dist", "no") != "no"


def _worker_count(config: pytest.Config) -> int:
    if not _distributed(config):
        return 1
    return int(config.getoption("numprocesses", 0) or 1)
