"""pytest-vla in other people's pytest: loading it costs nothing heavy, and it leaves the environment as it found it."""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_vla.controller.placement import PROCESS_VARIABLES
from tests.conftest import FAKE_SUITE
from tests.models import state_only_export

HEAVY = ("numpy", "onnxruntime", "onnx", "imageio", "scipy", "PIL", "mujoco", "jsonschema", "robosuite")

# A whole pytest session in a project that never names an export, with the plugin loaded through
# its pytest11 entry point as in any environment it is installed in; then what it imported.
SESSION_WITHOUT_EXPORT = f"""
import json, sys, pytest
status = pytest.main(["-q", "-p", "no:randomly", "-p", "no:cacheprovider"])
assert "pytest_vla.plugin" in sys.modules, "the plugin was not loaded"
print(json.dumps({{"status": int(status), "heavy": [m for m in {HEAVY!r} if m in sys.modules]}}))
"""


def test_a_session_without_an_export_imports_nothing_heavy(tmp_path: Path) -> None:
    (tmp_path / "test_plain.py").write_text("def test_plain():\n    assert 1 + 1 == 2\n")
    env = {key: value for key, value in os.environ.items() if key != "PYTEST_ADDOPTS"}
    done = subprocess.run(
        [sys.executable, "-c", SESSION_WITHOUT_EXPORT], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome == {"status": 0, "heavy": []}


@pytest.mark.parametrize(
    ("args", "variables"),
    [
        (["--vla-render", "egl"], {"MUJOCO_GL": "egl", "PYOPENGL_PLATFORM": "egl"}),
        (["--vla-gpus", "3"], {"CUDA_VISIBLE_DEVICES": "3"}),
    ],
)
def test_the_variables_a_run_sets_are_restored_when_it_ends(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, args: list[str], variables: dict[str, str]
) -> None:
    pytester.makeconftest(FAKE_SUITE)
    state_only_export(pytester.path / "export")
    for name in PROCESS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MUJOCO_GL", "osmesa")  # the user's own choice, to be found again
    before = {name: os.environ.get(name) for name in PROCESS_VARIABLES}

    class SeeTheRun:
        def __init__(self) -> None:
            self.seen: dict[str, str | None] = {}

        def pytest_sessionfinish(self) -> None:
            self.seen = {name: os.environ.get(name) for name in variables}

    watcher = SeeTheRun()
    monkeypatch.setenv("FAKE_SUITE_SCRIPT", json.dumps({"0": "succeed"}))
    # In this process, as pytester's in-process runs and a user's own later tests share it.
    result = pytester.runpytest(
        "--vla-export", "export", "--vla-suite", "fake", "--vla-tasks", "fake:0", "--vla-num-episodes", "1",
        "-p", "no:xdist", "-p", "no:cacheprovider", *args, plugins=[watcher],
    )  # fmt: skip
    assert result.ret == pytest.ExitCode.OK
    assert watcher.seen == variables  # the run itself had them
    assert {name: os.environ.get(name) for name in PROCESS_VARIABLES} == before


# Every module of the package, as far as the packages installed allow: only a missing third-party
# package may stop one (the simulation stack is not installed beside the 3.10 interpreter).
IMPORT_EVERY_MODULE = """
import importlib, pkgutil, pytest_vla
for module in pkgutil.walk_packages(pytest_vla.__path__, "pytest_vla."):
    try:
        importlib.import_module(module.name)
    except ModuleNotFoundError as exc:
        if exc.name.split(".")[0] == "pytest_vla":
            raise
"""


@functools.cache
def _python_310() -> str | None:
    """A Python 3.10 interpreter, the oldest pyproject.toml declares: pyenv's, or one on PATH that runs."""
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates = [*map(str, sorted(pyenv.glob("3.10.*/bin/python3.10"))), shutil.which("python3.10")]
    for candidate in filter(None, candidates):
        # pyenv's shims are on PATH for versions that are not selected: they exit 127.
        if subprocess.run([candidate, "-c", "import sys; sys.exit(sys.version_info[:2] != (3, 10))"]).returncode == 0:
            return candidate
    return None


@pytest.mark.skipif(_python_310() is None, reason="no Python 3.10 interpreter here (vermin checks the code instead)")
def test_the_plugin_loads_under_the_oldest_declared_python(tmp_path: Path) -> None:
    """pytest loads an installed plugin in every session: on 3.10 it must import and leave other sessions alone."""
    python = _python_310()
    assert python is not None
    venv = tmp_path / "venv"
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    # The plugin's own code needs only pytest to load; the simulation stack is not installed here.
    subprocess.run([*pip, "pytest>=9", "pytest-xdist"], check=True, capture_output=True)
    # From a copy: building in the checkout would leave build/ there, beside other runs' imports.
    source = tmp_path / "source"
    repository = Path(__file__).parents[1]
    shutil.copytree(repository / "pytest_vla", source / "pytest_vla", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(repository / name, source / name)
    subprocess.run([*pip, "--no-deps", str(source)], check=True, capture_output=True)
    imported = subprocess.run([str(venv / "bin" / "python"), "-c", IMPORT_EVERY_MODULE], capture_output=True, text=True)
    assert imported.returncode == 0, imported.stdout + imported.stderr
    project = tmp_path / "project"
    project.mkdir()
    (project / "test_plain.py").write_text("def test_plain():\n    assert True is not False\n")
    env = {key: value for key, value in os.environ.items() if key not in ("PYTEST_ADDOPTS", "PYTHONPATH")}
    session = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider", "--help"],
        cwd=project, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert session.returncode == 0, session.stderr
    assert "--vla-export" in session.stdout  # loaded through its entry point
    session = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=project, env=env, capture_output=True, text=True,
    )  # fmt: skip
    assert session.returncode == 0, session.stdout + session.stderr
    assert "1 passed" in session.stdout
