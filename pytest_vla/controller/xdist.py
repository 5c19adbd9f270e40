"""pytest-xdist wiring: the plan shipped to every worker, GPUs pinned per worker, and how a worker died.

Local workers start while the controller's preflight runs: each imports pytest, pytest-vla and the
simulation stack meanwhile, then waits for the plan in a file the controller writes once the
preflight passed. After a failed preflight xdist's teardown ends them before any episode.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_vla.controller import placement
from pytest_vla.controller.options import export_path
from pytest_vla.controller.run import WorkerDeath

if TYPE_CHECKING:
    from xdist.workermanage import WorkerController

    from pytest_vla.controller.hooks import ControllerHooks

WORKER_PLAN = "vla_plan"  # the plan itself, where the run began before its workers started
WORKER_PLAN_FILE = "vla_plan_file"  # where the plan will be, where the workers start beside the preflight
_POLL_S = 0.02


class PlanHandoff:
    """The file local workers read their plan from, written once and atomically."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="pytest-vla-plan-"))
        self.path = self.folder / "plan.json"

    def send(self, plan: dict[str, Any]) -> None:
        partial = self.folder / "plan.json.partial"
        partial.write_text(json.dumps(plan), encoding="utf-8")
        os.replace(partial, self.path)

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def wait_for_plan(config: pytest.Config, path: Path) -> dict[str, Any] | None:
    """A worker's plan, once the controller's preflight passed; None when the controller is gone.

    The wait imports what the first episode needs (the suite and its simulation stack), as the
    preflight's probe does: the preflight checks the same import and says what went wrong.
    """
    from pytest_vla.controller.options import read_settings
    from pytest_vla.controller.preflight import make_suite

    with contextlib.suppress(Exception):  # the preflight reports it, in one line
        settings = read_settings(config)
        suite = make_suite(config, settings.suite)
        suite.observation_shapes(suite.resolve_tasks(settings.tasks)[0])
    controller = os.getppid()
    while os.getppid() == controller:
        with contextlib.suppress(FileNotFoundError):
            plan: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
            return plan
        time.sleep(_POLL_S)
    return None


class XdistHooks:
    """Registered on the controller only when pytest-xdist is installed."""

    def __init__(self, controller: ControllerHooks) -> None:
        self.controller = controller
        self.handoff: PlanHandoff | None = None  # where local workers wait for the plan

    @pytest.hookimpl(wrapper=True)
    def pytest_sessionstart(self, session: pytest.Session) -> Generator[None, None, None]:
        yield  # xdist's own sessionstart starts the workers: they wait for the plan
        if self.handoff is not None:
            # A failed preflight raises here: xdist's teardown ends the waiting workers.
            self.handoff.send(self.controller.begin().plan.to_json())

    def pytest_unconfigure(self) -> None:
        if self.handoff is not None:
            self.handoff.remove()

    def pytest_xdist_setupnodes(self, config: pytest.Config, specs: list[Any]) -> None:
        setup = self.controller.setup
        if setup is None:
            return
        if all(getattr(spec, "popen", False) for spec in specs) and not setup.settings.cost_preview:
            self.handoff = PlanHandoff()
        else:  # a remote worker cannot read the controller's files; a preview starts no worker to stop
            self.controller.begin()
        assignment = placement.place_workers(specs, setup.gpus)
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None and assignment:
            pairs = ", ".join(f"gw{index}: {device}" for index, device in enumerate(assignment))
            reporter.write_line(f"vla: workers pinned to GPUs ({pairs})")

    def pytest_configure_node(self, node: WorkerController) -> None:
        if self.controller.run is not None:
            node.workerinput[WORKER_PLAN] = self.controller.run.plan.to_json()
        elif self.handoff is not None:
            node.workerinput[WORKER_PLAN_FILE] = str(self.handoff.path)

    def pytest_testnodedown(self, node: WorkerController, error: object | None) -> None:
        if self.controller.run is not None and error:
            pin = node.gateway.spec.env.get("CUDA_VISIBLE_DEVICES")
            self.controller.run.worker_deaths[node.gateway.id] = WorkerDeath(worker_exit(node, error), pin)

    def pytest_xdist_node_collection_finished(self, node: WorkerController, ids: list[str]) -> None:
        # Every worker collects the same items (the plan decides them); any one's list will do.
        if self.controller.run is not None:
            self.controller.run.expect(ids)


def auto_worker_count(config: pytest.Config) -> int | None:
    """``-n auto`` / ``-n logical``: workers for the cores and the memory (xdist counts cores only)."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS"):
        return None  # xdist's own override
    try:
        workers, reason = placement.auto_worker_count(export_path(config))
    except OSError:
        return None  # the preflight names an unreadable export
    config.stash[placement.AUTO_WORKERS_KEY] = f"vla: -n auto: {reason}"
    return workers


def worker_exit(node: WorkerController, error: object) -> str:
    """How an xdist worker went down, from its exit code when the process tells."""
    popen = getattr(getattr(node.gateway, "_io", None), "popen", None)  # execnet's local popen gateways
    try:
        code = popen.wait(timeout=5) if popen is not None else None
    except Exception:  # a remote gateway, or a process that will not go
        code = None
    if code is not None and code < 0:
        return f"killed by {_signal_name(-code)}"
    if code is not None:
        return f"exit code {code}"
    return str(error).splitlines()[0] if str(error) else "no exit status"


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:  # real-time signals (SIGRTMIN..SIGRTMAX) have no name of their own
        return f"signal {number}"
