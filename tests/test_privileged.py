"""The privileged-state sources: raw observation keys and the goal's objects of interest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from pytest_vla.errors import ExportError
from pytest_vla.export.manifest import ObjectsOfInterestInput, ObservationInput, load_manifest, parse_manifest
from pytest_vla.policy.feeds import binding_shapes, synthetic_observation
from pytest_vla.policy.onnx import OnnxPolicy
from pytest_vla.suites.base import Observation, StateConvention
from pytest_vla.suites.libero import LiberoSuite
from pytest_vla.suites.libero.goal import goal_objects
from tests.models import privileged_policy, write_export

SUITE = LiberoSuite()


def _task(key: str):
    (task,) = SUITE.resolve_tasks([key])
    return task


# --- the manifest ----------------------------------------------------------------------------


def test_manifest_reads_privileged_sources(tmp_path: Path) -> None:
    export = write_export(
        tmp_path / "e",
        privileged_policy({"gripper": [1, 2], "objects": [1, "k", 3]}),
        {"gripper": {"source": "obs", "key": "robot0_gripper_qpos"}, "objects": {"source": "objects_of_interest"}},
    )
    assert load_manifest(export).inputs == (
        ObservationInput(name="gripper", key="robot0_gripper_qpos"),
        ObjectsOfInterestInput(name="objects"),
    )
    # A state-only export renders no camera.
    assert load_manifest(export).cameras == ()


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"source": "obs"}, r"inputs\.x\.key must name a simulator observation .* got None"),
        ({"source": "obs", "key": ""}, r"inputs\.x\.key must name a simulator observation"),
        ({"source": "obs", "key": 3}, r"inputs\.x\.key must name a simulator observation .* got 3"),
        ({"source": "objects"}, r"unknown source 'objects' \(known: 'image', 'state', 'obs', 'objects_of_interest', "),
    ],
)
def test_malformed_privileged_bindings_are_named(tmp_path: Path, spec: dict[str, Any], message: str) -> None:
    (tmp_path / "model.onnx").write_bytes(b"")
    raw = {"format": "vla-export/1", "model": "model.onnx", "inputs": {"x": spec}, "action": {"output": "a", "dim": 7}}
    with pytest.raises(ExportError, match=message):
        parse_manifest(raw, tmp_path)


# --- objects of interest: names and order --------------------------------------------------


def _problem(goal: list[list[str]], regions: dict[str, str]) -> dict[str, Any]:
    return {"goal_state": goal, "regions": {name: {"target": target} for name, target in regions.items()}}


def test_goal_objects_follow_goal_order_and_map_regions_to_their_owner() -> None:
    problem = _problem(
        [["in", "soup_1", "basket_1_contain_region"], ["on", "milk_1", "basket_1_contain_region"], ["open", "cab_1"]],
        {"basket_1_contain_region": "basket_1"},
    )
    assert goal_objects(problem) == ("soup_1", "basket_1", "milk_1", "cab_1")


def test_a_region_of_the_workspace_stands_for_itself() -> None:
    problem = _problem(
        [["on", "plate_1", "main_table_stove_front_region"]], {"main_table_stove_front_region": "main_table"}
    )
    assert goal_objects(problem) == ("plate_1", "main_table_stove_front_region")


@pytest.mark.parametrize(
    ("task", "expected"),
    [
        ("libero_object:0", ("alphabet_soup_1", "basket_1")),
        ("libero_object:9", ("orange_juice_1", "basket_1")),
        ("libero_spatial:3", ("akita_black_bowl_1", "plate_1")),
        ("libero_goal:0", ("wooden_cabinet_1",)),  # "open the middle drawer": the drawer's cabinet
        ("libero_goal:5", ("plate_1", "main_table_stove_front_region")),
        # The BDDL's own :obj_of_interest lists plate_1, plate_2 first; the goal order is what is documented.
        ("libero_10:4", ("porcelain_mug_1", "plate_1", "white_yellow_mug_1", "plate_2")),
    ],
)
def test_objects_of_interest_of_real_tasks(task: str, expected: tuple[str, ...]) -> None:
    assert SUITE.objects_of_interest(_task(task)) == expected


# --- binding shapes and the checks before any episode ---------------------------------------


def _export(tmp_path: Path, inputs: dict[str, list[Any]], bindings: dict[str, Any]) -> Path:
    return write_export(tmp_path / "_".join(inputs), privileged_policy(inputs), bindings)


def test_shapes_follow_the_task(tmp_path: Path) -> None:
    manifest = load_manifest(
        _export(
            tmp_path,
            {"soup": [1, 3], "state_all": [1, "n"], "objects": [1, "k", 3]},
            {
                "soup": {"source": "obs", "key": "alphabet_soup_1_pos"},
                "state_all": {"source": "obs", "key": "object-state"},
                "objects": {"source": "objects_of_interest"},
            },
        )
    )
    shapes = binding_shapes(manifest, SUITE, _task("libero_object:0"))
    # libero_object:0 has 7 movable objects, each contributing pos, quat, relative pos and quat.
    assert shapes == {"soup": (1, 3), "state_all": (1, 7 * 14), "objects": (1, 2, 3)}
    # Another scene has other objects: its keys differ, and so does the number of goal objects.
    with pytest.raises(ExportError, match="'alphabet_soup_1_pos' is not a libero observation of task libero_10:3"):
        binding_shapes(manifest, SUITE, _task("libero_10:3"))
    objects_only = load_manifest(
        _export(tmp_path, {"objects": [1, "k", 3]}, {"objects": {"source": "objects_of_interest"}})
    )
    assert binding_shapes(objects_only, SUITE, _task("libero_10:4")) == {"objects": (1, 4, 3)}


@pytest.mark.parametrize(
    ("key", "message"),
    [
        (
            "robot0_gripper_pos",
            r"'robot0_gripper_pos' is not a libero observation of task libero_object:0 "
            r"\(did you mean 'robot0_gripper_qpos'",
        ),
        ("agentview_image", r"camera images are bound with the 'image' source"),
        ("ketchup_1_pos", r"'ketchup_1_pos' is not a libero observation of task libero_object:0"),  # not in this scene
        ("zzz", r"known: robot0_joint_pos, "),
    ],
)
def test_unknown_observation_keys_are_named(tmp_path: Path, key: str, message: str) -> None:
    manifest = load_manifest(_export(tmp_path, {"x": [1, 3]}, {"x": {"source": "obs", "key": key}}))
    with pytest.raises(ExportError, match=message):
        binding_shapes(manifest, SUITE, _task("libero_object:0"))


def test_a_static_object_count_is_checked_against_every_task(tmp_path: Path) -> None:
    manifest = load_manifest(_export(tmp_path, {"objects": [1, 2, 3]}, {"objects": {"source": "objects_of_interest"}}))
    policy = OnnxPolicy(manifest)
    policy.check_shapes(binding_shapes(manifest, SUITE, _task("libero_object:0")), _task("libero_object:0"))
    with pytest.raises(
        ExportError, match=r"inputs\.objects: model shape \[1, 2, 3\] does not accept \[1, 4, 3\] \(task libero_10:4\)"
    ):
        policy.check_shapes(binding_shapes(manifest, SUITE, _task("libero_10:4")), _task("libero_10:4"))


def test_observation_shape_mismatch_is_named(tmp_path: Path) -> None:
    manifest = load_manifest(_export(tmp_path, {"quat": [1, 3]}, {"quat": {"source": "obs", "key": "robot0_eef_quat"}}))
    with pytest.raises(ExportError, match=r"inputs\.quat: model shape \[1, 3\] does not accept \[1, 4\]"):
        OnnxPolicy(manifest).check_shapes(
            binding_shapes(manifest, SUITE, _task("libero_object:0")), _task("libero_object:0")
        )


def test_feeds_come_from_the_raw_observation_and_the_object_positions(tmp_path: Path) -> None:
    manifest = load_manifest(
        _export(
            tmp_path,
            {"gripper": [1, 2], "objects": [1, "k", 3]},
            {"gripper": {"source": "obs", "key": "robot0_gripper_qpos"}, "objects": {"source": "objects_of_interest"}},
        )
    )
    policy = OnnxPolicy(manifest)
    objects = np.array([[0.1, 0.2, 0.3], [0.4, 0.5, 0.6]])
    observation = Observation(
        images={}, state=np.zeros(8), raw={"robot0_gripper_qpos": np.array([0.04, -0.03])}, objects_of_interest=objects
    )
    feed = policy.inputs(observation)
    np.testing.assert_array_equal(feed["gripper"], np.array([[0.04, -0.03]], np.float32))
    np.testing.assert_array_equal(feed["objects"], objects[None].astype(np.float32))
    (action,) = policy.act(observation)
    np.testing.assert_allclose(action[:3], objects.sum() + 0.01, rtol=1e-6)


def test_a_missing_key_at_run_time_is_a_policy_error(tmp_path: Path) -> None:
    from pytest_vla.errors import PolicyError

    manifest = load_manifest(_export(tmp_path, {"x": [1, 3]}, {"x": {"source": "obs", "key": "milk_1_pos"}}))
    with pytest.raises(PolicyError, match=r"inputs\.x: the observation has no key 'milk_1_pos'"):
        OnnxPolicy(manifest).inputs(Observation(images={}, state=np.zeros(8), raw={}))


def test_the_synthetic_observation_has_every_key_of_the_task() -> None:
    task = _task("libero_object:0")
    observation = synthetic_observation(SUITE, task, ())
    assert set(observation.raw) == set(SUITE.observation_shapes(task))
    assert observation.objects_of_interest.shape == (2, 3)


@pytest.mark.libero
def test_a_real_env_has_exactly_the_declared_keys_and_object_positions() -> None:
    # libero_goal:5 has fixtures (which have no observations) and a goal region on the table.
    task = _task("libero_goal:5")
    env = SUITE.make_env(task, (), 7, StateConvention())
    try:
        observation = env.reset(0)
        actual = {key: np.shape(value) for key, value in observation.raw.items()}
        assert actual == dict(SUITE.observation_shapes(task))
        sim = env._env.env.sim
        # robosuite samples its observables during the control step's substeps; LIBERO's own state
        # (what its goal check reads) is the sim after the step: they agree to simulator noise.
        np.testing.assert_allclose(observation.objects_of_interest[0], observation.raw["plate_1_pos"], atol=1e-6)
        np.testing.assert_array_equal(
            observation.objects_of_interest[1], sim.data.get_site_xpos("main_table_stove_front_region")
        )
    finally:
        env.close()
