"""One JUnit testcase per episode, whatever reran.

pytest's junitxml writes a testcase for every attempt of an item that pytest-rerunfailures reran;
dashboards would then count an episode several times. After the file is written, the earlier
attempts of each episode are dropped (the last attempt decides, as in report.json) and the suite
counts are recomputed.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

_OUTCOMES = {"failures": "failure", "errors": "error", "skipped": "skipped"}


def keep_last_attempts(path: Path, is_episode: Callable[[str], bool]) -> None:
    """Rewrite ``path`` in place with only the last testcase of each episode."""
    tree = ET.parse(path)
    suites = [tree.getroot()] if tree.getroot().tag == "testsuite" else tree.getroot().findall("testsuite")
    changed = False
    for suite in suites:
        last: dict[tuple[str | None, str | None], ET.Element] = {}
        for case in suite.findall("testcase"):
            key = (case.get("classname"), case.get("name"))
            if is_episode(f"{key[0]}::{key[1]}" if key[0] else str(key[1])) and key in last:
                suite.remove(last[key])
                changed = True
            last[key] = case
        cases = suite.findall("testcase")
        suite.set("tests", str(len(cases)))
        for attribute, tag in _OUTCOMES.items():
            suite.set(attribute, str(sum(1 for case in cases if case.find(tag) is not None)))
    if changed:
        tree.write(path, encoding="utf-8", xml_declaration=True)
