"""A real Slurm array of shards on a one-node cluster (Debian's slurm-wlm and munge), then a merge.

The cluster is started by ``scripts/slurm_cluster.sh``; ``scripts/test.sh`` installs Slurm where
it can (root and apt-get). Without them the test is skipped with the reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.merging import run_merge, stable_rows

ROOT = Path(__file__).resolve().parents[1]
ARRAY_SCRIPT = ROOT / "deploy" / "slurm" / "eval-array.sbatch"
RUN = ["--vla-tasks", "libero_object:0,libero_object:1", "--vla-num-episodes", "2", "--vla-max-steps", "40",
       "-p", "no:xdist", "-p", "no:cacheprovider"]  # fmt: skip


@pytest.fixture(scope="session")
def slurm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The environment that reaches the cluster (``SLURM_CONF``), with this venv's pytest first on PATH."""
    missing = [tool for tool in ("munged", "slurmctld", "slurmd", "sbatch") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"Slurm is not installed ({', '.join(missing)} missing): apt-get install slurm-wlm munge")
    if os.geteuid() != 0:
        pytest.skip("a Slurm node needs root to start jobs")
    directory = tmp_path_factory.mktemp("slurm")
    started = subprocess.run(
        ["bash", str(ROOT / "scripts" / "slurm_cluster.sh"), "start", str(directory)], capture_output=True, text=True
    )
    assert started.returncode == 0, started.stderr
    env = {**os.environ, "SLURM_CONF": str(directory / "slurm.conf")}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    try:
        yield env
    finally:
        subprocess.run(["bash", str(ROOT / "scripts" / "slurm_cluster.sh"), "stop", str(directory)], check=False)


@pytest.mark.libero
def test_a_slurm_array_of_shards_merges_into_the_unsharded_run(
    slurm: dict[str, str], pytester: pytest.Pytester, validate_report
) -> None:
    output = pytester.path / "out"
    submitted = subprocess.run(
        ["sbatch", "--wait", "--array=0-1", f"--chdir={pytester.path}", str(ARRAY_SCRIPT), "demo", str(output), *RUN],
        env=slurm, capture_output=True, text=True, timeout=540,
    )  # fmt: skip
    logs = "".join(path.read_text() for path in sorted(pytester.path.glob("pytest-vla-*.out")))
    assert sorted(path.name for path in output.iterdir()) == ["shard-0", "shard-1"], submitted.stderr + logs
    whole = pytester.runpytest_subprocess("--vla-export", "demo", *RUN, "--vla-output", "whole")
    assert submitted.returncode == whole.ret, logs  # sbatch --wait: the worst exit status of the array's tasks

    merged = run_merge("--output", "merged", "out/shard-0", "out/shard-1", cwd=pytester.path)
    assert merged.returncode == 0, merged.stdout + merged.stderr
    report = validate_report(pytester.path / "merged" / "report.json")
    unsharded = validate_report(pytester.path / "whole" / "report.json")
    assert stable_rows(report) == stable_rows(unsharded) and report["aggregate"] == unsharded["aggregate"]
    shards = {part["shard"]: part for part in report["merged_from"]}
    assert sorted(shards) == [0, 1]
    assert (pytester.path / "merged" / "junit.xml").is_file()
