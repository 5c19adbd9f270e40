"""pytest-vla: evaluate VLA policies on simulation benchmarks, one pytest item per episode."""

from importlib import metadata

try:
    __version__ = metadata.version("pytest-vla")
except metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"
