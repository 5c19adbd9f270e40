"""pytest-xdist wiring: the plan shipped to every worker, GPUs pinned per worker, and how a worker died."""

from __future__ import annotations

import os
import signal
from typing import TYPE_CHECKING, Any

import pytest

from pytest_vla.controller import placement
from pytest_vla.controller.options import export_path
from pytest_vla.controller.run import WorkerDeath

if TYPE_CHECKING:
    from xdist.workermanage import WorkerController

    from pytest_vla.controller.hooks import ControllerHooks

WORKER_PLAN = "vla_plan"


class XdistHooks:
    """Registered on the controller only when pytest-xdist is installed."""

    def __init__(self, controller: ControllerHooks) -> None:
        self.controller = controller

    def pytest_xdist_setupnodes(self, config: pytest.Config, specs: list[Any]) -> None:
        if self.controller.run is None:
            return
        assignment = placement.place_workers(specs, self.controller.run.gpus)
        reporter = config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None and assignment:
            pairs = ", ".join(f"gw{index}: {device}" for index, device in enumerate(assignment))
            reporter.write_line(f"vla: workers pinned to GPUs ({pairs})")

    def pytest_configure_node(self, node: WorkerController) -> None:
        if self.controller.run is not None:
            node.workerinput[WORKER_PLAN] = self.controller.run.plan.to_json()

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
