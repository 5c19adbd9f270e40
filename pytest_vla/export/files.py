"""Where an export is, and what it is made of: the digests that tie a report to the exact files evaluated."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from pytest_vla.errors import ExportError

# `--vla-export demo` names the scripted pick-and-place export shipped in the package
# (built by scripts/build_demo_export.py); a local directory called demo is `./demo`.
DEMO_NAME = "demo"
DEMO_EXPORT_DIR = Path(__file__).resolve().parent / "demo"


def resolve_export(value: str) -> Path:
    """The export directory an ``--vla-export`` value names."""
    if value == DEMO_NAME:
        return DEMO_EXPORT_DIR
    return Path(value).expanduser().resolve()


def file_digest(path: Path, name: str | None = None) -> dict[str, Any]:
    """sha256 and size of one file, streamed so multi-GB weights never sit in memory."""
    digest = hashlib.sha256()
    try:
        with path.open("rb") as stream:
            for block in iter(lambda: stream.read(1 << 20), b""):
                digest.update(block)
    except OSError as exc:
        raise ExportError(f"{path}: cannot be read: {exc.strerror or exc}") from None
    return {"name": name or path.name, "sha256": digest.hexdigest(), "bytes": path.stat().st_size}


def export_files(export_dir: Path) -> list[dict[str, Any]]:
    """Digests of every file of the export, subdirectories included (a reflex export's tokenizer/), by relative path."""
    files = sorted(path for path in export_dir.rglob("*") if path.is_file())
    return [file_digest(path, path.relative_to(export_dir).as_posix()) for path in files]
