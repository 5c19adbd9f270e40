#!/usr/bin/env bash
# Set up, then run the linters and the whole test suite (unit and real-LIBERO end-to-end tests).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup.sh"
# Real components the tests drive (each test skips, saying why, without its own): a one-node Slurm
# cluster for the shard tests, Debian's chromium for report.html (Playwright cannot download one).
missing=""
command -v slurmctld >/dev/null || missing="$missing slurm-wlm munge"
command -v chromium >/dev/null || missing="$missing chromium"
if [ -n "$missing" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  # shellcheck disable=SC2086
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
fi
cd "$root"
.venv/bin/ruff check pytest_vla tests scripts conftest_examples benchmarks
.venv/bin/ruff format --check pytest_vla tests scripts conftest_examples benchmarks
.venv/bin/lint-imports
# The code must run on the oldest Python pyproject.toml declares (tests/test_guest.py also loads the plugin on a real 3.10).
.venv/bin/vermin --target=3.10- --violations --no-tips -q pytest_vla tests scripts benchmarks conftest_examples
exec .venv/bin/pytest -n 2 "$@"
