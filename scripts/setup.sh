#!/usr/bin/env bash
# Create ./.venv with pytest-vla (editable) and its test tools, and make sure OSMesa is there.
# Sourced by scripts/demo.sh and scripts/test.sh; safe to run again.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
python="${PYTHON:-python3}"

if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
  echo "pytest-vla needs Python 3.10 or newer; set PYTHON=/path/to/python3.x" >&2
  exit 2
fi

# MuJoCo renders headless through OSMesa by default (Debian/Ubuntu package libosmesa6).
if ! ldconfig -p 2>/dev/null | grep -q libOSMesa; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq libosmesa6 >/dev/null
  else
    echo "OSMesa is missing. Install it with: sudo apt-get install -y libosmesa6" >&2
    exit 2
  fi
fi

if [ ! -x "$root/.venv/bin/python" ]; then
  "$python" -m venv "$root/.venv"
fi
"$root/.venv/bin/python" -m pip install -q --upgrade pip
"$root/.venv/bin/python" -m pip install -q -e "$root[test]"
