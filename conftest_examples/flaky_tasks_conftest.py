"""Example conftest.py: rerun flaky episodes and expect known-bad tasks to fail.

Copy it as conftest.py into the directory you run ``pytest --vla-export ...`` from. Reruns need
pytest-rerunfailures (``pip install pytest-rerunfailures``). The final attempt decides an episode's
row in report.json (its ``attempt`` says which), and JUnit keeps one testcase per episode.
"""

from __future__ import annotations

import pytest

# Tasks whose episodes sometimes die for reasons outside the policy (e.g. a renderer on a busy GPU).
FLAKY_TASKS = {"libero_10:3"}
# Tasks known to fail (a BDDL goal the policy's training data never reached): expected failures.
KNOWN_BAD_TASKS = {"libero_90:41": "shelf goal never reached in training"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        task = getattr(item, "task", None)  # pytest-vla's episode items carry their TaskSpec
        if task is None:
            continue
        if task.key in FLAKY_TASKS:
            item.add_marker(pytest.mark.flaky(reruns=2))
        if task.key in KNOWN_BAD_TASKS:
            item.add_marker(pytest.mark.xfail(reason=KNOWN_BAD_TASKS[task.key], strict=False))
