"""The export format: ``vla_export.json`` bindings, reflex export directories, normalization statistics, files.

Pure data: nothing here loads a model, imports pytest or starts a simulator.
"""

from __future__ import annotations

from pathlib import Path

MANIFEST_NAME = "vla_export.json"
FORMAT = "vla-export/1"

# `--vla-export demo` names the scripted pick-and-place export shipped in the package
# (built by scripts/build_demo_export.py); a local directory called demo is `./demo`.
DEMO_NAME = "demo"
DEMO_EXPORT_DIR = Path(__file__).resolve().parent / "demo"


def resolve_export(value: str) -> Path:
    """The export directory an ``--vla-export`` value names."""
    if value == DEMO_NAME:
        return DEMO_EXPORT_DIR
    return Path(value).expanduser().resolve()
