"""MetaWorld MT50 under LeRobot's evaluation protocol; facts in ``docs/metaworld.md``."""

from pytest_vla.suites.metaworld.suite import MetaworldSuite

__all__ = ["MetaworldSuite"]
