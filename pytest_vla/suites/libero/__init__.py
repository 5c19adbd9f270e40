"""LIBERO under the de-facto VLA protocol (openpi ``examples/libero/main.py``); facts in ``docs/protocol.md``."""

from pytest_vla.suites.libero.suite import LiberoSuite

__all__ = ["LiberoSuite"]
