#!/usr/bin/env bash
# Set up, then run the linters and the whole test suite (unit and real-LIBERO end-to-end tests).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup.sh"
# The shard tests run a real Slurm array on a one-node cluster (tests/test_slurm.py skips without it).
if ! command -v slurmctld >/dev/null && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null
fi
cd "$root"
.venv/bin/ruff check pytest_vla tests scripts conftest_examples benchmarks
.venv/bin/ruff format --check pytest_vla tests scripts conftest_examples benchmarks
.venv/bin/lint-imports
exec .venv/bin/pytest -n 2 "$@"
