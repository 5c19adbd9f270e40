"""The simulator preflight: one env built, reset, rendered and settled in a subprocess, before any episode.

Nothing here imports pytest: :mod:`~pytest_vla.preflight.probe` runs as its own process, and the
controller (:mod:`pytest_vla.controller.preflight`) launches it, reuses its result and ships it to
the workers. :mod:`~pytest_vla.preflight.cost` turns its measured timings into a run's cost.
"""
