"""What a run will cost, from the preflight's measured timings: a step-cost model of this harness.

Per worker process: starting it (xdist) and the stack's import, once. Per task on a worker (tasks
stay on one worker with ``--dist worksteal``): one env build. Per episode: one reset, then per step
the physics, each rendered camera, and a policy query every ``steps_per_query`` steps. Tasks go to
the least loaded worker, longest first; workers beyond the CPU count share cores. OSMesa renders
on every core: the preflight measured it alone, and concurrent workers divide those cores.
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pytest_vla.preflight.result import PreflightTimings
from pytest_vla.report.schema import TaskSpec
from pytest_vla.report.summary import duration_text

COST_TABLE_SCHEMA_VERSION = 1
# Rendering one 256x256 camera for one step under OSMesa on the reference machine, when the
# preflight rendered none (measured: 230 ms a step with two cameras, 19 ms without).
FALLBACK_RENDER_S = 0.105
# Starting an xdist worker (interpreter, pytest, the plugin, onnxruntime, the model): measured on
# the reference machine (benchmarks/cost_model.py); the preflight does not start one.
WORKER_START_S = 4.0


@dataclass(frozen=True)
class TaskWork:
    task: TaskSpec
    episodes: int
    max_steps: int  # the step budget the run gives it


@dataclass(frozen=True)
class CostEstimate:
    wall_s: float
    episodes: int
    tasks: int
    workers: int
    hourly_usd: float
    devices: int  # GPUs (or machines, without GPUs) billed at hourly_usd
    usd: float
    usd_by_family: dict[str, float]
    assumptions: tuple[str, ...]

    def lines(self) -> list[str]:
        return [
            f"vla: estimate: {self.tasks} tasks, {self.episodes} episodes on {self.workers} worker(s): "
            f"about {duration_text(self.wall_s)} wall time, ${self.usd:.2f} at ${self.hourly_usd:g}/h x {self.devices}",
            *(f"vla:   assumes {assumption}" for assumption in self.assumptions),
        ]

    def to_report(self) -> dict[str, Any]:
        """report.json's ``cost``: schema v1's keys, then the estimate's own."""
        return {
            "total_usd": round(self.usd, 4),
            "by_task": {family: round(usd, 4) for family, usd in self.usd_by_family.items()},
            "cost_table_schema_version": COST_TABLE_SCHEMA_VERSION,
            "estimated_wall_s": round(self.wall_s, 1),
            "hourly_usd": self.hourly_usd,
            "devices": self.devices,
            "workers": self.workers,
            "assumptions": list(self.assumptions),
        }


def estimate_cost(
    work: Sequence[TaskWork],
    timings: PreflightTimings,
    *,
    workers: int,
    cpus: int,
    cameras: int,
    steps_per_query: int,
    shared_rendering: bool,
    hourly_usd: float,
    devices: int,
) -> CostEstimate:
    """``shared_rendering``: rendering uses every core (OSMesa), so concurrent workers slow it down."""
    render_s = timings.render_s if timings.render_s is not None else FALLBACK_RENDER_S
    render_share = min(workers, cpus) if shared_rendering else 1
    inference_s = timings.inference_s or 0.0
    step_s = timings.step_s + cameras * render_s * render_share + inference_s / max(steps_per_query, 1)
    task_s = [timings.env_build_s + item.episodes * (timings.reset_s + item.max_steps * step_s) for item in work]
    loads = [0.0] * max(workers, 1)
    for seconds in sorted(task_s, reverse=True):
        heapq.heapreplace(loads, loads[0] + seconds)
    contention = max(workers / max(cpus, 1), 1.0)
    start_s = timings.import_s + (WORKER_START_S if workers > 1 else 0.0)
    wall_s = (start_s + max(loads)) * contention
    usd = wall_s / 3600 * hourly_usd * devices
    total_task_s = sum(task_s) or 1.0
    by_family: dict[str, float] = {}
    for item, seconds in zip(work, task_s, strict=True):
        by_family[item.task.family] = by_family.get(item.task.family, 0.0) + usd * seconds / total_task_s
    rendering = ""
    if cameras:
        measured = "" if timings.render_s is not None else " (the reference machine's OSMesa: not measured here)"
        shared = f", x{render_share} for {render_share} workers sharing the cores" if render_share > 1 else ""
        rendering = f" + {cameras} camera(s) x {1000 * render_s:.0f} ms{measured}{shared}"
    assumptions = [
        "every episode runs its full step budget (an upper bound: episodes that succeed end sooner)",
        f"per step {1000 * timings.step_s:.1f} ms physics{rendering} + a {1000 * inference_s:.1f} ms query every "
        f"{steps_per_query} step(s); {timings.env_build_s:.1f} s per env build, {timings.reset_s:.1f} s per reset "
        "(the preflight's measures)",
        "each task's episodes stay on one worker (--dist worksteal or loadscope)",
    ]
    if workers > 1:
        assumptions.append(f"{WORKER_START_S:g} s to start each xdist worker (the reference machine's)")
    if contention > 1:
        assumptions.append(f"{workers} workers share {cpus} CPUs: {contention:.1f}x slower each")
    return CostEstimate(
        wall_s=wall_s,
        episodes=sum(item.episodes for item in work),
        tasks=len(work),
        workers=workers,
        hourly_usd=hourly_usd,
        devices=devices,
        usd=usd,
        usd_by_family=by_family,
        assumptions=tuple(assumptions),
    )
