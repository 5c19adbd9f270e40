"""pytest-vla against a plain openpi-style loop on the same episodes: whole-command and per-episode time.

Run from the repository root, on a machine doing nothing else:
``.venv/bin/python benchmarks/throughput.py [--tasks ...] [--episodes 2] [--steps 40] [--out benchmarks/results]``.

Two exports built here (tests/models.py): one that binds agentview at 224 px and one that reads
the state only. Neither ever succeeds, so every episode runs its whole budget and all runs do the
same work. For each export it runs, one after another:

- the plain loop (openpi's examples/libero/main.py written out): one process, both cameras
  rendered at 256 px, one env per task, a hard reset, the 10 settle steps and the step budget per
  episode, the ONNX model queried in the same process;
- ``pytest --vla-export ... -n 1`` and ``-n 2 --dist worksteal``.

It writes ``throughput.md`` (the table) and ``throughput.png`` (the plot) to ``--out``, every
figure from this one invocation, since absolute times on shared machines drift. The harness's own
overhead (interpreter and plugin start-up, preflight, collection, teardown) is the command's time
minus the episodes' span in report.json; env builds are apart too. Peak resident memory is an
episode process's: the plain loop's, or pytest-vla's largest xdist worker's (not the controller's or
the preflight's, which run no episode), next to a bare env's: a process that only builds and resets
each task's env in turn, one at a time, as a worker does.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

SEED, PLAIN_RESOLUTION = 7, 256


@dataclass
class Measured:
    """One configuration's figures, all from this invocation."""

    name: str
    export: str
    command_s: float  # the whole command, start to exit
    episodes: int
    episode_s: float  # mean per episode: reset, settle steps and the budget's policy steps
    env_build_s: float  # all env constructions
    overhead_s: float  # command minus the episodes' span: start-up, preflight, collection, teardown
    peak_rss_mib: float  # the episode process's: the plain loop's, or the largest xdist worker's
    after_preflight_s: float | None = None  # pytest-vla: report.json's wall_clock_s, from the preflight's end
    preflight: dict[str, Any] | None = None  # pytest-vla: report.json's preflight block (elapsed_s, timings)
    largest_build_s: float | None = None  # pytest-vla: the longest env construction of any episode

    @property
    def episodes_per_hour(self) -> float:
        return 3600 * self.episodes / self.command_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="libero_object:0,libero_spatial:0")
    parser.add_argument("--episodes", type=int, default=2)
    parser.add_argument("--steps", type=int, default=40, help="policy steps per episode (the budget)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--plain", nargs=2, metavar=("EXPORT", "RESULT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    tasks = [(family, int(index)) for family, _, index in (task.partition(":") for task in args.tasks.split(","))]
    if args.plain:  # the child process that runs the plain loop
        result = plain_loop(Path(args.plain[0]), tasks, args.episodes, args.steps)
        Path(args.plain[1]).write_text(json.dumps(result))
        return
    from tests.models import camera_export, state_only_export

    measured: list[Measured] = []
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        exports = {
            "agentview 224 px": camera_export(work / "camera", size=224, chunk=4),
            "state only": state_only_export(work / "state", chunk=4),
        }
        bare_rss = {"agentview 224 px": bare_env_rss(tasks, True), "state only": bare_env_rss(tasks, False)}
        for label, export in exports.items():
            measured.append(run_plain(label, export, args, work))
            for workers in (1, 2):
                measured.append(run_pytest_vla(label, export, workers, args, work))
    args.out.mkdir(parents=True, exist_ok=True)
    table = markdown(measured, bare_rss, args)
    (args.out / "throughput.md").write_text(table)
    plot(measured, args.out / "throughput.png")
    print(table)


def plain_loop(export: Path, tasks: list[tuple[str, int]], episodes: int, steps: int) -> dict[str, Any]:
    """openpi's LIBERO loop: both cameras rendered, one env per task, hard reset per episode."""
    os.environ.setdefault("MUJOCO_GL", "osmesa")
    os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")
    import onnxruntime as ort
    from libero.libero import benchmark, get_libero_path
    from libero.libero.envs import OffScreenRenderEnv

    from tests.openpi import run_episode

    manifest = json.loads((export / "vla_export.json").read_text())
    session = ort.InferenceSession(str(export / manifest["model"]), providers=["CPUExecutionProvider"])
    image_input = manifest["inputs"].get("image")
    image_size = image_input["size"][0] if image_input else None
    durations, builds = [], 0.0
    for family, index in tasks:
        suite = benchmark.get_benchmark_dict()[family]()
        task = suite.get_task(index)
        started = time.perf_counter()
        env = OffScreenRenderEnv(
            bddl_file_name=os.path.join(get_libero_path("bddl_files"), task.problem_folder, task.bddl_file),
            camera_heights=PLAIN_RESOLUTION,
            camera_widths=PLAIN_RESOLUTION,
        )
        builds += time.perf_counter() - started
        init_states = suite.get_task_init_states(index)
        for episode in range(episodes):
            started = time.perf_counter()
            run_episode(env, session, init_states[episode], SEED, steps, image_size)
            durations.append(time.perf_counter() - started)
        env.close()
    return {"episode_s": durations, "env_build_s": builds}


def run_plain(label: str, export: Path, args: argparse.Namespace, work: Path) -> Measured:
    result = work / "plain.json"
    command = [sys.executable, __file__, "--tasks", args.tasks, "--episodes", str(args.episodes),
               "--steps", str(args.steps), "--plain", str(export), str(result)]  # fmt: skip
    seconds, peaks = _timed(command, work)
    data = json.loads(result.read_text())
    durations = data["episode_s"]
    span = sum(durations) + data["env_build_s"]
    mean = sum(durations) / len(durations)
    return Measured(
        "plain loop (openpi)", label, seconds, len(durations), mean, data["env_build_s"], seconds - span, max(peaks)
    )


def run_pytest_vla(label: str, export: Path, workers: int, args: argparse.Namespace, work: Path) -> Measured:
    output = work / f"out-{export.name}-{workers}"
    command = [sys.executable, "-m", "pytest", "-q", "--vla-export", str(export), "--vla-tasks", args.tasks,
               "--vla-num-episodes", str(args.episodes), "--vla-max-steps", str(args.steps),
               "--vla-output", str(output), "-n", str(workers), "--dist", "worksteal",
               # A fresh preflight each run; the dev env's hypothesis plugin imports hypothesis at the summary (2 s).
               "-p", "no:cacheprovider", "-p", "no:hypothesispytest"]  # fmt: skip
    seconds, peaks = _timed(command, work, role=XDIST_WORKER)
    report = json.loads((output / "report.json").read_text())
    rows = report["episodes"]
    if len(rows) != len(args.tasks.split(",")) * args.episodes or len(peaks) != workers:
        sys.exit(f"pytest-vla -n {workers} ran {len(rows)} episodes on {len(peaks)} workers; see {output}")
    return Measured(f"pytest-vla -n {workers}", label, seconds, len(rows),
                    sum(row["wall_clock_s"] for row in rows) / len(rows),
                    sum(row["env_construction_s"] for row in rows), seconds - report["wall_clock_s"], max(peaks),
                    report["wall_clock_s"], report["preflight"],
                    max(row["env_construction_s"] for row in rows))  # fmt: skip


def bare_env_rss(tasks: list[tuple[str, int]], camera: bool) -> float:
    """Peak resident memory of a process that only imports LIBERO and builds and resets each task's env in turn."""
    env = (
        "OffScreenRenderEnv(bddl_file_name=bddl, camera_names=['agentview'], camera_heights=256, camera_widths=256)"
        if camera
        else "ControlEnv(bddl_file_name=bddl, use_camera_obs=False, has_offscreen_renderer=False, camera_names=[])"
    )
    code = (
        "import os; os.environ.setdefault('MUJOCO_GL', 'osmesa')\n"
        "from libero.libero import benchmark, get_libero_path\n"
        "from libero.libero.envs.env_wrapper import ControlEnv, OffScreenRenderEnv\n"
        f"for family, index in {tasks!r}:\n"
        "    task = benchmark.get_benchmark_dict()[family]().get_task(index)\n"
        "    bddl = os.path.join(get_libero_path('bddl_files'), task.problem_folder, task.bddl_file)\n"
        f"    env = {env}\n"
        "    env.reset()\n"
        "    env.close()\n"
    )
    return max(_timed([sys.executable, "-c", code], Path.cwd(), ok=(0,))[1])


# How execnet starts an xdist worker: ``python -c "import sys;exec(eval(sys.stdin.readline()))"``.
XDIST_WORKER = "exec(eval(sys.stdin.readline()))"


def _timed(
    command: list[str], cwd: Path, ok: tuple[int, ...] = (0, 1), role: str | None = None
) -> tuple[float, list[float]]:
    """The command's wall time, and the peak resident memory (MiB) of each process it ran whose
    command line contains ``role`` (the command's own process when None), read from /proc every 0.1 s."""
    started = time.perf_counter()
    peaks: dict[int, float] = {}
    with tempfile.TemporaryFile("w+") as log:
        process = subprocess.Popen(command, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, text=True)
        while process.poll() is None:
            for pid in [process.pid] if role is None else _descendants(process.pid):
                peak = _peak_rss_mib(pid, role)
                if peak is not None:
                    peaks[pid] = max(peak, peaks.get(pid, 0.0))
            time.sleep(0.1)
        seconds = time.perf_counter() - started
        if process.returncode not in ok:  # pytest's 1: the episodes failed, as they must
            log.seek(0)
            sys.exit(f"{' '.join(command)} exited {process.returncode}:\n{log.read()[-6000:]}")
    return seconds, list(peaks.values())


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            parent = int((entry / "stat").read_text().rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            continue  # not a process, or it just ended
        children.setdefault(parent, []).append(int(entry.name))
    found, pending = [], [root]
    while pending:
        pid = pending.pop()
        found.append(pid)
        pending.extend(children.get(pid, []))
    return found


def _peak_rss_mib(pid: int, role: str | None) -> float | None:
    """The process's peak resident set so far (VmHWM), if it is alive and plays ``role``."""
    try:
        if role is not None and role not in Path(f"/proc/{pid}/cmdline").read_text().replace("\0", " "):
            return None
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


def markdown(measured: list[Measured], bare_rss: dict[str, float], args: argparse.Namespace) -> str:
    bare = ", ".join(f"{export} {rss:.0f} MiB" for export, rss in bare_rss.items())
    lines = [
        f"Tasks {args.tasks}, {args.episodes} episodes each, {args.steps} policy steps per episode (never done), "
        f"seed {SEED}; {os.cpu_count()} CPUs. A bare env process (each task's env built and reset in turn) "
        f"peaks at: {bare}.",
        "",
        "| export | run | command s | episode s | x plain | episodes/h | x plain | env builds s | overhead s "
        "| episode process peak RSS MiB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for entry in measured:
        plain = next(m for m in measured if m.export == entry.export and m.name.startswith("plain"))
        lines.append(
            f"| {entry.export} | {entry.name} | {entry.command_s:.1f} | {entry.episode_s:.2f} | "
            f"{entry.episode_s / plain.episode_s:.2f} | {entry.episodes_per_hour:.0f} | "
            f"{entry.episodes_per_hour / plain.episodes_per_hour:.2f} | {entry.env_build_s:.1f} | "
            f"{entry.overhead_s:.1f} | {entry.peak_rss_mib:.0f} |"
        )
    lines += [
        "",
        "pytest-vla's fixed cost apart: start-up and teardown (interpreter, plugin, collection, the summary) are "
        "the command minus the preflight and report.json's wall_clock_s; the preflight (its own process: the "
        "stack's import, an env build and reset, the settle steps, the policy's first query) is report.json's "
        "preflight.elapsed_s; the first env build is the longest of the run's env constructions.",
        "",
        "| export | run | command s | start-up + teardown s | preflight s | of it: import / env build / reset s "
        "| first env build s | after the preflight s |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for entry in measured:
        if entry.preflight is None or entry.after_preflight_s is None or entry.largest_build_s is None:
            continue
        preflight_s, timings = entry.preflight["elapsed_s"], entry.preflight["timings"]
        parts = " / ".join(f"{timings[key]:.1f}" for key in ("import_s", "env_build_s", "reset_s"))
        lines.append(
            f"| {entry.export} | {entry.name} | {entry.command_s:.1f} | "
            f"{entry.command_s - preflight_s - entry.after_preflight_s:.1f} | {preflight_s:.1f} | {parts} | "
            f"{entry.largest_build_s:.1f} | {entry.after_preflight_s:.1f} |"
        )
    lines.append("")
    for export in dict.fromkeys(entry.export for entry in measured):
        one, two = (next(m for m in measured if m.export == export and m.name == f"pytest-vla -n {n}") for n in (1, 2))
        assert one.after_preflight_s and two.after_preflight_s
        lines.append(
            f"{export}: `-n 2` runs {one.command_s / two.command_s:.2f}x the episodes per hour of `-n 1` over the "
            f"whole command, {one.after_preflight_s / two.after_preflight_s:.2f}x from the preflight's end "
            f"(report.json's wall_clock_s: worker start, env builds and episodes)."
        )
    return "\n".join(lines) + "\n"


def plot(measured: list[Measured], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    labels = [f"{m.name}\n{m.export}" for m in measured]
    positions = range(len(measured))
    left.barh(positions, [m.episode_s for m in measured], color="#4c72b0")
    left.set_yticks(list(positions), labels, fontsize=7)
    left.invert_yaxis()
    left.set_xlabel("seconds per episode (reset + settle + budget)")
    right.barh(positions, [m.episodes_per_hour for m in measured], color="#55a868")
    right.set_yticks(list(positions), [""] * len(measured))
    right.invert_yaxis()
    right.set_xlabel("episodes per hour (whole command)")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
