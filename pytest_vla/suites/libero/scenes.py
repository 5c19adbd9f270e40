"""Compiled LIBERO scenes kept on disk, so a later process loads a scene instead of compiling it.

A process's first compile of a LIBERO scene takes about 2.9 s: MuJoCo decodes every mesh and
texture, which later compiles in the same process find in its in-memory asset cache (0.5 to
1.2 s). Every process of a run pays that first compile: the preflight's, then the one running
episodes (each xdist worker). A model saved with ``mj_saveModel`` loads in about 0.6 s and is the
same model, array for array (``tests/test_e2e_libero.py``). A scene is 260 to 330 MB, so the
cache is bounded (:data:`CACHE_BYTES`, the least recently used go first) and a process saves only
the first scene it compiles, the expensive one (0.9 to 2 s to write).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import Any

CACHE_BYTES = 2 << 30  # about 7 LIBERO scenes
_FILE_REFERENCE = re.compile(r'\bfile="([^"]*)"')


class _Process:
    compiled = False  # this process compiled a scene (and offered its first to the cache)


def scene_model(xml: str) -> Any:
    """The MuJoCo model of ``xml``: loaded where a process saved it before, else compiled."""
    import mujoco

    key = _scene_key(xml)
    path = cache_directory() / f"{key}.mjb" if key is not None else None
    if path is not None and path.is_file():
        # MuJoCo's warning about a damaged file would go to MUJOCO_LOG.TXT in the user's working directory.
        warn = mujoco.get_mju_user_warning()
        mujoco.set_mju_user_warning(lambda message: None)
        try:
            model = mujoco.MjModel.from_binary_path(str(path))
        except Exception:  # a damaged file (a disk that filled up): compiled below, and replaced
            path.unlink(missing_ok=True)
        else:
            with contextlib.suppress(OSError):
                os.utime(path)  # recently used: evicted last
            return model
        finally:
            mujoco.set_mju_user_warning(warn)
    model = mujoco.MjModel.from_xml_string(xml)
    if path is not None and not _Process.compiled:
        _save(model, path)
    _Process.compiled = True
    return model


def cache_directory() -> Path:
    """The user's cache directory (``XDG_CACHE_HOME``, else ``~/.cache``), a folder per MuJoCo build."""
    import mujoco

    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "pytest-vla" / f"mujoco-{mujoco.mj_versionString()}"


def _scene_key(xml: str) -> str | None:
    """A digest of the XML, the MuJoCo build and every asset file it names (path, size, modification time).

    None for a scene that names an asset by a relative path or one that cannot be read: it is
    compiled, not cached.
    """
    import mujoco

    files = sorted(set(_FILE_REFERENCE.findall(xml)))
    if not all(os.path.isabs(name) for name in files):  # absolute ones ignore meshdir and texturedir
        return None
    digest = hashlib.sha256(f"{mujoco.mj_versionString()}\n{xml}".encode())
    for name in files:
        try:
            stat = os.stat(name)
        except OSError:
            return None
        digest.update(f"\n{name}:{stat.st_size}:{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def _save(model: Any, path: Path) -> None:
    """Write the model whole or not at all, then evict beyond :data:`CACHE_BYTES`.

    A cache that cannot be written (a read-only home, a full disk) costs the next process a compile, nothing more.
    """
    import mujoco

    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, prefix=".writing-", suffix=".mjb", delete=False) as file:
            partial = Path(file.name)
        try:
            mujoco.mj_saveModel(model, str(partial), None)
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
        _evict(path.parent)
    except Exception:  # OSError, or MuJoCo's own error for a file it could not write
        return


def _evict(cache: Path) -> None:
    entries = []
    for entry in cache.glob("*.mjb"):
        with contextlib.suppress(OSError):
            stat = entry.stat()
            entries.append((stat.st_mtime_ns, stat.st_size, entry))
    total = sum(size for _, size, _ in entries)
    for _, size, entry in sorted(entries):  # least recently used first
        if total <= CACHE_BYTES:
            return
        entry.unlink(missing_ok=True)
        total -= size
