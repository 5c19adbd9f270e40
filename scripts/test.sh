#!/usr/bin/env bash
# Set up, then run the linters and the whole test suite (unit and real-LIBERO end-to-end tests).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup.sh"
cd "$root"
.venv/bin/ruff check pytest_vla tests scripts conftest_examples benchmarks
.venv/bin/ruff format --check pytest_vla tests scripts conftest_examples benchmarks
.venv/bin/lint-imports
exec .venv/bin/pytest -n 2 "$@"
