"""Benchmark suites behind one interface (:mod:`pytest_vla.suites.base`); LIBERO ships built in."""

from __future__ import annotations

import pytest

from pytest_vla.suites.base import Suite

BUILT_IN = ("libero",)


def built_in_suite(name: str) -> Suite | None:
    if name == "libero":
        from pytest_vla.suites.libero import LiberoSuite

        return LiberoSuite()
    return None


@pytest.hookimpl(trylast=True)
def pytest_vla_make_suite(config: pytest.Config, name: str) -> Suite | None:
    return built_in_suite(name)
