"""The compiled-scene cache (pytest_vla/suites/libero/scenes.py) on small MuJoCo scenes."""

from __future__ import annotations

import os
from pathlib import Path

import mujoco
import numpy as np
import pytest

from pytest_vla.suites.libero import scenes

SCENE = '<mujoco><worldbody><body><freejoint/><geom type="box" size="{size} 0.1 0.1"/></body></worldbody></mujoco>'


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(scenes._Process, "compiled", False)
    return scenes.cache_directory()


def _bytes(model: mujoco.MjModel) -> bytes:
    buffer = np.zeros(mujoco.mj_sizeModel(model), dtype=np.uint8)
    mujoco.mj_saveModel(model, None, buffer)
    return buffer.tobytes()


def test_a_process_saves_its_first_compile_and_later_ones_load_it(cache: Path) -> None:
    compiled = scenes.scene_model(SCENE.format(size=0.2))
    (saved,) = cache.glob("*.mjb")
    assert _bytes(scenes.scene_model(SCENE.format(size=0.2))) == _bytes(compiled)
    scenes.scene_model(SCENE.format(size=0.3))  # this process's second compile: not saved
    assert list(cache.glob("*.mjb")) == [saved]


def test_a_damaged_entry_is_compiled_again_and_replaced(
    cache: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scenes.scene_model(SCENE.format(size=0.2))
    (saved,) = cache.glob("*.mjb")
    saved.write_bytes(b"not a model")
    scenes._Process.compiled = False  # a later process
    monkeypatch.chdir(tmp_path)
    model = scenes.scene_model(SCENE.format(size=0.2))
    assert not (tmp_path / "MUJOCO_LOG.TXT").exists()  # MuJoCo's warning stays out of the user's directory
    assert _bytes(model) == _bytes(mujoco.MjModel.from_xml_string(SCENE.format(size=0.2)))
    assert _bytes(mujoco.MjModel.from_binary_path(str(saved))) == _bytes(model)


def test_the_least_recently_used_go_beyond_the_bound(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entries = []
    for used, size in enumerate((0.1, 0.2, 0.3)):
        scenes._Process.compiled = False
        scenes.scene_model(SCENE.format(size=size))
        (entry,) = set(cache.glob("*.mjb")) - set(entries)
        os.utime(entry, ns=(used * 10**9, used * 10**9))  # used in this order
        entries.append(entry)
    scenes.scene_model(SCENE.format(size=0.1))  # the oldest, loaded: now the most recently used
    monkeypatch.setattr(scenes, "CACHE_BYTES", entries[0].stat().st_size * 2)
    scenes._Process.compiled = False
    scenes.scene_model(SCENE.format(size=0.4))
    (new,) = set(cache.glob("*.mjb")) - set(entries)
    assert set(cache.glob("*.mjb")) == {entries[0], new}


def test_scenes_with_relative_assets_or_an_unwritable_cache_are_compiled(cache: Path, tmp_path: Path) -> None:
    (tmp_path / "cube.obj").write_text("v 0 0 0\nv 1 0 0\nv 0 1 0\nv 0 0 1\nf 1 2 3\nf 1 2 4\nf 1 3 4\nf 2 3 4\n")
    relative = (
        '<mujoco><asset><mesh name="cube" file="cube.obj"/></asset>'
        '<worldbody><geom type="mesh" mesh="cube"/></worldbody></mujoco>'
    )
    assert scenes._scene_key(relative) is None
    cache.parent.mkdir(parents=True)
    cache.write_text("a file where the cache's folder would be")
    assert scenes.scene_model(SCENE.format(size=0.2)).ngeom == 1  # compiled all the same
