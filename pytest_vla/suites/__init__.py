"""Benchmark suites behind one interface (:mod:`pytest_vla.suites.base`), found by name.

A suite registers under the ``pytest_vla.suites`` entry point group (pytest-vla's own do, in its
pyproject.toml), or comes from a plugin or conftest through the ``pytest_vla_make_suite`` hook.
"""

from __future__ import annotations

from importlib import metadata
from typing import TYPE_CHECKING

from pytest_vla.errors import SuiteError, one_line

if TYPE_CHECKING:
    from pytest_vla.suites.base import Suite

ENTRY_POINT_GROUP = "pytest_vla.suites"
DEFAULT_SUITE = "libero"


def installed_suites() -> tuple[str, ...]:
    """The names the ``pytest_vla.suites`` entry points register, sorted."""
    return tuple(sorted({entry.name for entry in metadata.entry_points(group=ENTRY_POINT_GROUP)}))


def installed_suite(name: str) -> Suite | None:
    """The suite an entry point registers as ``name`` (its object called), None if none does.

    Raises :class:`SuiteError` naming the entry point when it cannot be loaded.
    """
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP, name=name):
        try:
            suite = entry.load()()
        except Exception as exc:
            raise SuiteError(f"suite {name!r} (entry point {entry.value}) cannot be loaded: {one_line(exc)}") from None
        return complete_suite(suite, f"suite {name!r} (entry point {entry.value})")
    return None


def complete_suite(suite: Suite, what: str) -> Suite:
    """``suite``, checked to have every member the interface requires; a SuiteError naming what it lacks."""
    from pytest_vla.suites.base import missing_members

    missing = missing_members(suite)
    if missing:
        raise SuiteError(f"{what} lacks {', '.join(missing)}, which every suite defines (docs/suites.md)")
    return suite


def unknown_suite(option: str, name: str) -> str:
    """The one-line refusal of a suite nobody provides."""
    return f"{option}: unknown suite {name!r} (installed: {', '.join(installed_suites())}; a plugin adds others)"


def task_selection(text: str) -> tuple[str, ...]:
    """A comma-separated ``--vla-tasks`` value as its entries (families or ``FAMILY:INDEX``)."""
    return tuple(entry.strip() for entry in text.split(",") if entry.strip())
