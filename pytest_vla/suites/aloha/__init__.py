"""ALOHA sim (gym-aloha) under LeRobot's evaluation protocol; facts in ``docs/aloha.md``."""

from pytest_vla.suites.aloha.suite import AlohaSuite

__all__ = ["AlohaSuite"]
