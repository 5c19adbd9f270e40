"""JUnit XML that says what each episode did: one testcase per episode, carrying the episode's facts.

pytest's junitxml writes a testcase for every attempt of an item that pytest-rerunfailures reran,
and a bare one (no properties) for an item whose xdist worker died. After the file is written, the
earlier attempts of each episode are dropped (the last attempt decides, as in report.json), every
episode testcase gets its row's facts as ``<property>`` elements, and the suite counts are
recomputed.
"""

from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from pathlib import Path

from _pytest.junitxml import mangle_test_address

from pytest_vla.report.schema import EpisodeRow
from pytest_vla.report.writer import write_text_atomically

# The episode facts every testcase carries; then those its suite's goal gives, where it gave them,
# and the objects it disturbed that its goal does not name (``side_effects``).
PROPERTIES = ("task_id", "task_index", "episode_index", "terminal_reason", "n_steps", "wall_clock_s")
GOAL_PROPERTIES = ("progress", "stage")
_OUTCOMES = {"failures": "failure", "errors": "error", "skipped": "skipped"}


def testcase_address(nodeid: str, prefix: str | None) -> tuple[str, str]:
    """(classname, name) of a node id's testcase, as pytest's junitxml writes them (``--junit-prefix`` too)."""
    names = mangle_test_address(nodeid)
    if prefix:
        names.insert(0, prefix)
    return ".".join(names[:-1]), names[-1]


def finish_junit(path: Path, episodes: Mapping[tuple[str, str], EpisodeRow], family: str) -> None:
    """Rewrite ``path`` with one testcase per episode (its last), each carrying its row's facts.

    Under ``junit_family=xunit2`` (pytest's default) the schema allows no ``<properties>`` in a
    testcase, so the facts go to the testcase's ``<system-out>``, which GitLab, Jenkins and the
    GitHub test reporters all show beside the test; ``xunit1``/``legacy`` keep them as properties.
    """
    tree = ET.parse(path)
    root = tree.getroot()
    for suite in [root] if root.tag == "testsuite" else root.findall("testsuite"):
        last: dict[tuple[str, str], ET.Element] = {}
        for case in suite.findall("testcase"):
            address = (case.get("classname") or "", case.get("name") or "")
            if address in episodes:
                if address in last:
                    suite.remove(last[address])
                last[address] = case
        for address, case in last.items():
            if family == "xunit2":
                _set_system_out(case, episodes[address])
            else:
                _set_properties(case, episodes[address])
        cases = suite.findall("testcase")
        suite.set("tests", str(len(cases)))
        for attribute, tag in _OUTCOMES.items():
            suite.set(attribute, str(sum(1 for case in cases if case.find(tag) is not None)))
    buffer = io.BytesIO()
    tree.write(buffer, encoding="utf-8", xml_declaration=True)
    write_text_atomically(path, buffer.getvalue().decode("utf-8"))  # a kill mid-write leaves the old file


def _facts(row: EpisodeRow) -> list[tuple[str, str]]:
    facts = [(name, str(row[name])) for name in PROPERTIES]  # type: ignore[literal-required]
    if row.get("trial"):  # a repeat (--vla-repeat); trial 0 is the episode an unrepeated run has
        facts.append(("trial", str(row["trial"])))
    facts += [(name, str(row.get(name))) for name in GOAL_PROPERTIES if row.get(name) is not None]
    disturbed = row.get("side_effects")
    if disturbed is not None:
        facts.append(("side_effects", ", ".join(effect["object"] for effect in disturbed) or "none"))
    return facts


def _episode_facts(row: EpisodeRow) -> str:
    """The episode's facts as ``name: value`` lines, the form a testcase's ``<system-out>`` carries."""
    return "".join(f"{name}: {value}\n" for name, value in _facts(row))


def _set_system_out(case: ET.Element, row: EpisodeRow) -> None:
    out = case.find("system-out")
    if out is None:
        out = ET.SubElement(case, "system-out")
    out.text = _episode_facts(row) + (out.text or "")


def _set_properties(case: ET.Element, row: EpisodeRow) -> None:
    for old in case.findall("properties"):
        case.remove(old)
    properties = ET.Element("properties")
    for name, value in _facts(row):
        ET.SubElement(properties, "property", name=name, value=value)
    case.insert(0, properties)  # the schema wants <properties> first
