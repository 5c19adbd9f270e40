from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.models import state_only_export

pytest_plugins = ["pytester"]

FAKE_SUITE = (Path(__file__).parent / "fake_suite.py").read_text()

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "shared" / "schema" / "report-v1.schema.json"
VENDORED_SCHEMA = Path(__file__).parent / "report-v1.schema.json"


@pytest.fixture(scope="session")
def report_schema() -> dict[str, Any]:
    """The report contract: ../shared/schema when present (the source of truth), else the vendored copy."""
    path = SCHEMA_PATH if SCHEMA_PATH.is_file() else VENDORED_SCHEMA
    return json.loads(path.read_text())


@pytest.fixture
def validate_report(report_schema: dict[str, Any]):
    def validate(path: Path) -> dict[str, Any]:
        report = json.loads(path.read_text())
        jsonschema.Draft202012Validator(report_schema).validate(report)
        return report

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
