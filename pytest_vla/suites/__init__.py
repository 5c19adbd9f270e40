"""Benchmark suites behind one interface (:mod:`pytest_vla.suites.base`); LIBERO ships built in.

Other suites come from plugins through the ``pytest_vla_make_suite`` hook.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pytest_vla.suites.base import Suite

BUILT_IN = ("libero",)
DEFAULT_SUITE = BUILT_IN[0]


def built_in_suite(name: str) -> Suite | None:
    if name == "libero":
        from pytest_vla.suites.libero import LiberoSuite

        return LiberoSuite()
    return None


def task_selection(text: str) -> tuple[str, ...]:
    """A comma-separated ``--vla-tasks`` value as its entries (families or ``FAMILY:INDEX``)."""
    return tuple(entry.strip() for entry in text.split(",") if entry.strip())
