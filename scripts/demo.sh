#!/usr/bin/env bash
# Set up, then evaluate the built-in demo export on LIBERO-Object; extra arguments go to pytest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup.sh"
cd "$root"
exec .venv/bin/pytest --vla-export demo --vla-tasks libero_object -n 2 --dist worksteal --junitxml eval_output/junit.xml "$@"
