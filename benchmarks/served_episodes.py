"""Episodes per hour with one export in-process and served by ``pytest-vla serve``, at ``-n 1`` and ``-n 2``.

Run from the repository root, on a machine doing nothing else:
``.venv/bin/python benchmarks/served_episodes.py [--export demo] [--tasks libero_object] [--episodes 1]``.

Each configuration is one whole ``pytest`` command (start-up and preflight included) on the same
episodes; served, one ``pytest-vla serve EXPORT --max-batch-size 2`` serves every configuration, and
the batch sizes it formed come from its statistics line at shutdown. Success counts are printed
beside the times: in-process and served runs of one export must agree.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BIN = Path(sys.executable).parent


def run(policy: list[str], workers: int, tasks: str, episodes: int, output: Path) -> tuple[float, int, int]:
    """Seconds for the whole command, episodes, successes."""
    command = [str(BIN / "pytest"), *policy, "--vla-tasks", tasks, "--vla-num-episodes", str(episodes), "-q"]
    command += ["-n", str(workers), "--dist", "worksteal"] if workers > 1 else ["-p", "no:xdist"]
    started = time.perf_counter()
    subprocess.run([*command, "--vla-output", str(output)], capture_output=True, check=False)
    seconds = time.perf_counter() - started
    rows = json.loads((output / "report.json").read_text())["episodes"]
    return seconds, len(rows), sum(row["success"] for row in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--export", default="demo")
    parser.add_argument("--tasks", default="libero_object")
    parser.add_argument("--episodes", type=int, default=1)
    args = parser.parse_args()
    server = subprocess.Popen(
        [str(BIN / "pytest-vla"), "serve", args.export, "--port", "0", "--max-batch-size", "2"],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert server.stderr is not None
    start = ""
    while not (url := re.search(r"serving .* at (ws://\S+)$", start.strip())):
        line = server.stderr.readline()
        if not line:
            raise SystemExit(f"pytest-vla serve did not start:\n{start}")
        start += line
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        for workers in (1, 2):
            for name, policy in (
                ("in-process", ["--vla-export", args.export]),
                ("pytest-vla serve", ["--vla-policy-server", url.group(1)]),
            ):
                output = Path(directory) / f"{name.replace(' ', '_')}_{workers}"
                rows.append((name, workers, *run(policy, workers, args.tasks, args.episodes, output)))
    server.terminate()
    log = server.communicate(timeout=60)[1]
    print(f"{'policy':<18} {'-n':>3} {'command s':>10} {'episodes':>9} {'succeeded':>10} {'episodes/h':>11}")
    for name, workers, seconds, episodes, successes in rows:
        per_hour = 3600 * episodes / seconds
        print(f"{name:<18} {workers:>3} {seconds:>10.1f} {episodes:>9} {successes:>10} {per_hour:>11.0f}")
    print("server:", (re.findall(r"stopped; .*", log) or ["no statistics line"])[-1])


if __name__ == "__main__":
    main()
