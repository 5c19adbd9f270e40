from __future__ import annotations

import json
import sys
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
