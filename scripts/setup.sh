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
# openpi's WebsocketPolicyServer and its client, for the served-policy tests. Without their
# dependencies: openpi-client 0.1.2 declares numpy<2, which would downgrade the simulation stack's
# numpy; what the tests import of it (msgpack_numpy, the client, the server) runs on numpy 2.
"$root/.venv/bin/python" -m pip install -q --no-deps openpi-client==0.1.2 openpi-server==0.1.0

# The xunit2 schema the tests validate JUnit XML against: the junit-10.xsd pytest validates its own
# output with, from the sdist of the installed pytest (the wheel does not ship its tests).
schema="$root/.venv/share/junit-10.xsd"
if [ ! -f "$schema" ]; then
  version=$("$root/.venv/bin/python" -c 'import pytest; print(pytest.__version__)')
  sdist=$(mktemp -d)
  "$root/.venv/bin/python" -m pip download -q --no-deps --no-binary :all: -d "$sdist" "pytest==$version"
  tar -xzf "$sdist"/pytest-*.tar.gz -C "$sdist" --wildcards '*/testing/example_scripts/junit-10.xsd'
  mkdir -p "$(dirname "$schema")"
  cp "$sdist"/pytest-*/testing/example_scripts/junit-10.xsd "$schema"
  rm -rf "$sdist"
fi
