from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import xmlschema

import pytest_vla.controller.episode_hooks
import pytest_vla.controller.hooks
import pytest_vla.controller.xdist
import pytest_vla.report.stats
from pytest_vla.report.reader import load_report
from tests.models import state_only_export

# pytester's in-process runs drop the modules a run imported, and a C extension cannot be loaded twice
# in one process: the stack the plugin imports only once active is imported here, before any run.
pytest_vla.report.stats.scipy_stats()

pytest_plugins = ["pytester"]

FAKE_SUITE = (Path(__file__).parent / "fake_suite.py").read_text()

# The xunit2 schema pytest validates its own JUnit XML against (testing/example_scripts/junit-10.xsd
# in pytest's sdist, the xUnit plugin's junit-10.xsd); scripts/setup.sh puts it in the venv.
JUNIT_SCHEMA = Path(sys.prefix) / "share" / "junit-10.xsd"


@pytest.fixture(scope="session")
def junit_schema() -> xmlschema.XMLSchema:
    if not JUNIT_SCHEMA.is_file():
        pytest.fail(f"{JUNIT_SCHEMA} is missing: run scripts/setup.sh, which extracts it from pytest's sdist")
    return xmlschema.XMLSchema(str(JUNIT_SCHEMA))


@pytest.fixture
def validate_junit(junit_schema: xmlschema.XMLSchema):
    def validate(path: Path) -> None:
        junit_schema.validate(str(path))

    return validate


@pytest.fixture
def validate_report():
    """What pytest-vla wrote, read back as its readers read it: schema v1, pytest-vla's keys, consistent tallies."""

    def validate(path: Path) -> dict[str, Any]:
        return load_report(path)

    return validate


@pytest.fixture(autouse=True)
def _no_random_order(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """pytest-randomly is installed for one test; every other pytest run these tests start keeps its order."""
    if "pytester" in request.fixturenames:
        request.getfixturevalue("pytester")  # it clears PYTEST_ADDOPTS when it is set up: ours comes after
    monkeypatch.setenv("PYTEST_ADDOPTS", "-p no:randomly")


@pytest.fixture
def fake(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch):
    """Run pytest-vla on the fake suite: ``fake(script, *args)``; the export and conftest are in place."""
    pytester.makeconftest(FAKE_SUITE)
    state_only_export(pytester.path / "export")

    def run(script: dict[str, str], *args: str, subprocess: bool = True) -> pytest.RunResult:
        monkeypatch.setenv("FAKE_SUITE_SCRIPT", json.dumps(script))
        common = ["--vla-export", "export", "--vla-suite", "fake"]
        runner = pytester.runpytest_subprocess if subprocess else pytester.runpytest
        return runner(*common, *args)

    return run


@pytest.fixture
def serve_export() -> Iterator[Any]:
    """Start ``pytest-vla serve EXPORT`` in its own process: the URL it serves at; each stopped by SIGTERM after."""
    processes: list[subprocess.Popen] = []

    def start(export: Path) -> str:
        command = [str(Path(sys.executable).parent / "pytest-vla"), "serve", str(export), "--port", "0"]
        processes.append(subprocess.Popen(command, stderr=subprocess.PIPE, text=True))
        assert processes[-1].stderr is not None
        for line in processes[-1].stderr:  # onnxruntime may warn first
            url = re.search(r"serving .* at (ws://127\.0\.0\.1:\d+)$", line.strip())
            if url:
                return url.group(1)
        raise AssertionError("pytest-vla serve did not start")

    yield start
    for process in processes:
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0
