#!/usr/bin/env bash
# Set up, then evaluate the export shipped in examples/ on LIBERO-Object; extra arguments go to pytest.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
bash "$root/scripts/setup.sh"
cd "$root"
exec .venv/bin/pytest --vla-export examples/tiny_export --vla-tasks libero_object --vla-num-episodes 1 \
  --vla-max-steps 20 -n 2 --junitxml eval_output/junit.xml "$@"
