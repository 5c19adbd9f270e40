"""Reading the episode facts pytest-vla puts in JUnit XML, as a dashboard would."""

from __future__ import annotations

from junitparser.xunit2 import TestCase


def episode_facts(case: TestCase) -> dict[str, str]:
    """The ``name: value`` lines of a testcase's ``<system-out>`` (junit_family=xunit2)."""
    lines = (case.system_out or "").splitlines()
    return dict(line.split(": ", 1) for line in lines if ": " in line)
