"""How much more LIBERO work two processes get through on this machine than one: the ceiling of ``-n 2``.

Run from the repository root, on a machine doing nothing else:
``.venv/bin/python benchmarks/cpu_scaling.py [--repeat 3]``.

Each kind of work an episode process does runs in one process alone, then in two processes at once
(both set up first, then started together): building an env (LIBERO's Python scene generation and
MuJoCo's compile), a hard reset, physics steps, and steps that render agentview at 256 px with
OSMesa. The lone process renders with llvmpipe's default threads (one per core), each of the two
with one thread, as pytest-vla's workers do. The ratio is the pair's throughput over the lone
process's: 2.0 means the two cores double it, whatever the harness around it.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

WORK = {
    "env build": "build",
    "hard reset": "reset",
    "physics step": "step",
    "step rendering agentview": "render",
}
TASK = ("libero_object", 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="units of work per kind (x100 for steps)")
    parser.add_argument("--work", choices=WORK.values(), help=argparse.SUPPRESS)  # a child process
    parser.add_argument("--go", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.work:
        print(work(args.work, args.repeat, args.go))
        return
    lines = [
        f"{os.cpu_count()} CPUs; {TASK[0]}:{TASK[1]}; seconds for the same work in each process.",
        "",
        "| work | one process s | two at once s (each) | throughput x |",
        "|---|---|---|---|",
    ]
    for label, kind in WORK.items():
        alone = run(kind, args.repeat, 1)[0]
        pair = run(kind, args.repeat, 2)
        lines.append(f"| {label} | {alone:.2f} | {pair[0]:.2f}, {pair[1]:.2f} | {2 * alone / (sum(pair) / 2):.2f} |")
    print("\n".join(lines))


def run(kind: str, repeat: int, processes: int) -> list[float]:
    """Start ``processes`` children, let them set up, start their work together; each one's seconds."""
    with tempfile.TemporaryDirectory() as scratch:
        go = Path(scratch) / "go"
        env = dict(os.environ, MUJOCO_GL="osmesa", PYOPENGL_PLATFORM="osmesa")
        if processes > 1:
            env["LP_NUM_THREADS"] = "1"  # as pytest-vla gives each of 2 workers on 2 cores
        command = [sys.executable, __file__, "--work", kind, "--repeat", str(repeat), "--go", str(go)]
        children = [
            subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
            for _ in range(processes)
        ]
        while len(list(Path(scratch).glob("ready-*"))) < processes:
            time.sleep(0.05)
        go.touch()
        return [float(child.communicate()[0].strip().splitlines()[-1]) for child in children]


def work(kind: str, repeat: int, go: Path) -> float:
    """Set up, say so, wait for ``go``, then time the work."""
    from libero.libero import benchmark, get_libero_path
    from libero.libero.envs.env_wrapper import ControlEnv, OffScreenRenderEnv

    task = benchmark.get_benchmark_dict()[TASK[0]]().get_task(TASK[1])
    bddl = os.path.join(get_libero_path("bddl_files"), task.problem_folder, task.bddl_file)

    def build() -> ControlEnv:
        if kind == "render":
            return OffScreenRenderEnv(
                bddl_file_name=bddl, camera_names=["agentview"], camera_heights=256, camera_widths=256
            )
        return ControlEnv(bddl_file_name=bddl, use_camera_obs=False, has_offscreen_renderer=False, camera_names=[])

    env = build()
    env.reset()
    (go.parent / f"ready-{os.getpid()}").touch()
    while not go.exists():
        time.sleep(0.01)
    started = time.perf_counter()
    if kind == "build":
        for _ in range(repeat):
            build().close()
    elif kind == "reset":
        for _ in range(repeat):
            env.reset()
    else:
        for _ in range(100 * repeat):
            env.step([0.0] * 6 + [-1.0])
    return time.perf_counter() - started


if __name__ == "__main__":
    main()
