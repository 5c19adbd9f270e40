"""The files users deploy with and nothing here can run: the Dockerfiles and the Kubernetes Job, linted.

The Slurm array script is run for real in tests/test_slurm.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.mark.parametrize("dockerfile", ["Dockerfile.cpu", "Dockerfile.gpu"])
def test_the_dockerfiles_pass_hadolint(dockerfile: str) -> None:
    result = subprocess.run([BIN / "hadolint", ROOT / "docker" / dockerfile], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_kubernetes_job_validates_against_the_api_schema() -> None:
    manifest = ROOT / "deploy" / "kubernetes" / "eval-indexed-job.yaml"
    result = subprocess.run([BIN / "kubernetes-validate", "--strict", manifest], capture_output=True, text=True)
    assert result.returncode == 0 and "passed" in result.stdout, result.stdout + result.stderr
    text = manifest.read_text()
    # pytest-vla's shard count must be the Job's completions, or shards overlap or go missing.
    completions = next(
        line.split(":")[1].strip() for line in text.splitlines() if line.strip().startswith("completions:")
    )
    assert f'value: "{completions}"  # = completions' in text


def test_the_slurm_array_script_parses() -> None:
    result = subprocess.run(["bash", "-n", ROOT / "deploy" / "slurm" / "eval-array.sbatch"], capture_output=True)
    assert result.returncode == 0, result.stderr
