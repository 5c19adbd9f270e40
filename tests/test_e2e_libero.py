"""pytest-vla on real LIBERO episodes, run the way users run it, with small step budgets."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from junitparser.xunit2 import JUnitXml

from tests.junit_xml import episode_facts
from tests.models import camera_export, state_only_export
from tests.openpi import run_episode

pytestmark = pytest.mark.libero

SEED = 7


def _reference_rollout(export: Path, family: str, index: int, episode: int, max_steps: int, size: int):
    """The openpi LIBERO loop written out independently: both cameras rendered, one fresh env."""
    os.environ.setdefault("MUJOCO_GL", "osmesa")
    os.environ.setdefault("PYOPENGL_PLATFORM", "osmesa")
    from libero.libero import benchmark, get_libero_path
    from libero.libero.envs import OffScreenRenderEnv

    suite = benchmark.get_benchmark_dict()[family]()
    task = suite.get_task(index)
    bddl = os.path.join(get_libero_path("bddl_files"), task.problem_folder, task.bddl_file)
    env = OffScreenRenderEnv(bddl_file_name=bddl, camera_heights=256, camera_widths=256)
    session = ort.InferenceSession(str(export / "model.onnx"), providers=["CPUExecutionProvider"])
    try:
        return run_episode(env, session, suite.get_task_init_states(index)[episode], SEED, max_steps, size)
    finally:
        env.close()


def test_episodes_follow_the_openpi_protocol_and_fill_every_output(
    pytester: pytest.Pytester, validate_report, validate_junit
) -> None:
    export = camera_export(pytester.path / "export", size=32, chunk=4)
    result = pytester.runpytest_subprocess(
        "--vla-export", "export", "--vla-tasks", "libero_object:3", "--vla-num-episodes", "2", "-k", "ep1",
        "--vla-max-steps", "6", "--vla-save-trajectories", "--junitxml", "junit.xml",
    )  # fmt: skip
    # A policy that never finishes: the budget runs out, which is a failure, not an error.
    result.assert_outcomes(failed=1, deselected=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    out = result.stdout.str()
    assert "vla: suite libero, 1 tasks x 2 episodes = 2 items, seed 7, cameras rendered: agentview" in out
    assert "libero_object:3:ep1: not done after 6 policy steps (step budget 6)" in out
    result.stdout.fnmatch_lines(
        ["libero_object*task 3*0/1*0.0%*pick up the bbq sauce*", "aggregate*0/1*0.0%*0.0,  79.3*"]
    )

    report = validate_report(pytester.path / "eval_output" / "report.json")
    (row,) = report["episodes"]
    assert (row["task_id"], row["task_index"], row["episode_index"]) == ("libero_object", 3, 1)
    assert (row["terminal_reason"], row["n_steps"], row["success"]) == ("timeout", 6, False)
    assert row["env_construction_s"] > 0 and row["wall_clock_s"] > 0
    assert report["protocol"]["versions"]["mujoco"] == "3.3.2"
    assert report["protocol"]["cameras_rendered"] == ["agentview"]
    assert report["execution_provider"] == "CPUExecutionProvider"

    validate_junit(pytester.path / "junit.xml")
    (case,) = [case for suite in JUnitXml.fromfile(str(pytester.path / "junit.xml")) for case in suite]
    assert episode_facts(case) == {
        "task_id": "libero_object",
        "task_index": "3",
        "episode_index": "1",
        "terminal_reason": "timeout",
        "n_steps": "6",
        "wall_clock_s": str(row["wall_clock_s"]),
        "progress": "0.0",
        "stage": "untouched",  # six steps of a policy that moves the arm little reach nothing
        "side_effects": "none",
    }

    saved = np.load(pytester.path / "eval_output" / "trajectories" / "libero_object_task3_episode_1.npz")
    assert saved["actions"].shape == (6, 7) and saved["states"].shape == (6, 8)
    # Bit for bit what the openpi loop does, though the reference renders both cameras and
    # pytest-vla renders only the one the export binds.
    actions, states = _reference_rollout(export, "libero_object", 3, 1, 6, 32)
    np.testing.assert_array_equal(saved["actions"], actions)
    np.testing.assert_array_equal(saved["states"], states)


def _episodes(report: dict) -> dict[tuple, dict]:
    return {(e["task_id"], e["task_index"], e["episode_index"]): e for e in report["episodes"]}


def test_xdist_workers_give_the_same_episodes_as_one_process(pytester: pytest.Pytester, validate_report) -> None:
    state_only_export(pytester.path / "export", chunk=3)
    common = ["--vla-export", "export", "--vla-tasks", "libero_goal:0,libero_spatial:4", "--vla-num-episodes", "2",
              "--vla-max-steps", "12", "--vla-save-trajectories"]  # fmt: skip
    single = pytester.runpytest_subprocess(*common, "--vla-output", "single", "-p", "no:xdist")
    single.assert_outcomes(failed=4)
    sharded = pytester.runpytest_subprocess(*common, "--vla-output", "sharded", "-n", "2")
    sharded.assert_outcomes(failed=4)
    one = _episodes(validate_report(pytester.path / "single" / "report.json"))
    two = _episodes(validate_report(pytester.path / "sharded" / "report.json"))
    assert sorted(one) == sorted(two) == [("libero_goal", 0, 0), ("libero_goal", 0, 1), *(
        ("libero_spatial", 4, 0), ("libero_spatial", 4, 1))]  # fmt: skip
    assert {row["worker"] for row in one.values()} == {"main"}
    assert {row["worker"] for row in two.values()} == {"gw0", "gw1"}
    for family, index, episode in one:
        name = f"{family}_task{index}_episode_{episode}.npz"
        a, b = (np.load(pytester.path / run / "trajectories" / name) for run in ("single", "sharded"))
        np.testing.assert_array_equal(a["states"], b["states"])
        np.testing.assert_array_equal(a["actions"], b["actions"])
    # Different init states do lead to different episodes: the comparison above is not vacuous.
    first, second = (
        np.load(pytester.path / "single" / "trajectories" / f"libero_goal_task0_episode_{n}.npz") for n in (0, 1)
    )
    assert not np.array_equal(first["states"], second["states"])


def test_a_policy_that_fails_on_the_real_observation_is_stopped_by_the_preflight(
    pytester: pytest.Pytester, validate_report
) -> None:
    # It answers the synthetic (zero) state of the export check; the first reset's state overflows it.
    state_only_export(pytester.path / "export", overflow=True)
    result = pytester.runpytest_subprocess(
        "--vla-export", "export", "--vla-tasks", "libero_object:0", "--vla-num-episodes", "2", "--vla-max-steps", "3",
    )  # fmt: skip
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([
        "ERROR: preflight failed ?export-invalid?: *export: on the first real observation: output 'actions' "
        "holds non-finite values (NaN or inf); remedy: *"
    ])  # fmt: skip
    report = validate_report(pytester.path / "eval_output" / "report.json")
    assert report["episodes"] == [] and report["preflight"]["failure"] == "export-invalid"


def test_last_failed_reruns_only_the_failed_episodes(pytester: pytest.Pytester) -> None:
    state_only_export(pytester.path / "export")
    args = [
        "--vla-export",
        "export",
        "--vla-tasks",
        "libero_spatial:0",
        "--vla-num-episodes",
        "3",
        "--vla-max-steps",
        "1",
    ]
    pytester.runpytest_subprocess(*args, "-k", "ep1").assert_outcomes(failed=1, deselected=2)
    rerun = pytester.runpytest_subprocess(*args, "--lf", "--collect-only", "-q")
    assert [line for line in rerun.stdout.lines if line.startswith("libero/")] == ["libero/libero_spatial:0::ep1"]


def test_one_process_loads_the_model_once(pytester: pytest.Pytester) -> None:
    state_only_export(pytester.path / "export")
    pytester.makeconftest(
        """
        from pathlib import Path

        import pytest_vla.policy.onnx

        loads = []
        original = pytest_vla.policy.onnx.OnnxPolicy.__init__

        def counting(self, *args, **kwargs):
            loads.append(1)
            original(self, *args, **kwargs)

        pytest_vla.policy.onnx.OnnxPolicy.__init__ = counting

        def pytest_sessionfinish(session):
            Path("loads.txt").write_text(str(len(loads)))
        """
    )
    result = pytester.runpytest_subprocess(
        "--vla-export", "export", "--vla-tasks", "libero_spatial:0", "--vla-num-episodes", "2", "--vla-max-steps", "1",
        "-p", "no:xdist",
    )  # fmt: skip
    result.assert_outcomes(failed=2)
    # The preflight's session runs the episodes too: a multi-GB model is not loaded twice.
    assert (pytester.path / "loads.txt").read_text() == "1"


def test_a_failed_env_build_closes_the_simulator_it_started(monkeypatch: pytest.MonkeyPatch) -> None:
    from libero.libero.envs.env_wrapper import ControlEnv

    from pytest_vla.errors import EnvFailure
    from pytest_vla.suites.base import StateConvention
    from pytest_vla.suites.libero import LiberoSuite
    from pytest_vla.suites.libero import env as libero_env

    closed = []
    original_close = ControlEnv.close
    monkeypatch.setattr(ControlEnv, "close", lambda self: closed.append(1) or original_close(self))

    def broken(env: object) -> None:
        raise RuntimeError("after the simulator started")

    monkeypatch.setattr(libero_env, "_step_like_a_rendering_env", broken)
    suite = LiberoSuite()
    (task,) = suite.resolve_tasks(["libero_spatial:0"])
    with pytest.raises(EnvFailure, match="after the simulator started"):
        suite.make_env(task, (), SEED, StateConvention())
    assert closed == [1]  # about 2 GiB each: not leaked once per episode of the task


def test_a_reused_env_gives_each_episode_exactly_as_a_fresh_env_does(pytester: pytest.Pytester) -> None:
    # Resets after the first reuse the compiled model (docs/performance.md); each episode must still
    # be the reference loop's on a fresh env, frames included.
    export = camera_export(pytester.path / "export", size=32, chunk=4)
    result = pytester.runpytest_subprocess(
        "--vla-export", "export", "--vla-tasks", "libero_object:3", "--vla-num-episodes", "3", "--vla-max-steps", "5",
        "--vla-save-trajectories", "-p", "no:xdist",
    )  # fmt: skip
    result.assert_outcomes(failed=3)
    for episode in range(3):
        saved = np.load(pytester.path / "eval_output" / "trajectories" / f"libero_object_task3_episode_{episode}.npz")
        actions, states = _reference_rollout(export, "libero_object", 3, episode, 5, 32)
        np.testing.assert_array_equal(saved["actions"], actions)
        np.testing.assert_array_equal(saved["states"], states)


def test_where_a_fixture_stands_does_not_depend_on_the_episodes_before(pytester: pytest.Pytester) -> None:
    # libero_spatial:4's cabinet is placed by a sampler LIBERO adds again at every reset: without
    # care, episode 1 alone and episode 1 after episode 0 see the cabinet 15 mm apart.
    camera_export(pytester.path / "export", size=32, chunk=4)
    common = ["--vla-export", "export", "--vla-tasks", "libero_spatial:4", "--vla-num-episodes", "2",
              "--vla-max-steps", "4", "--vla-save-trajectories", "-p", "no:xdist"]  # fmt: skip
    pytester.runpytest_subprocess(*common, "--vla-output", "alone", "-k", "ep1").assert_outcomes(failed=1, deselected=1)
    pytester.runpytest_subprocess(*common, "--vla-output", "after").assert_outcomes(failed=2)
    alone, after = (np.load(pytester.path / run / "trajectories" / "libero_spatial_task4_episode_1.npz")
                    for run in ("alone", "after"))  # fmt: skip
    np.testing.assert_array_equal(alone["actions"], after["actions"])


@pytest.mark.parametrize(
    "task_key", ["libero_spatial:1", "libero_object:5", "libero_goal:2", "libero_10:4", "libero_90:7"]
)
def test_an_env_compiles_its_scene_once_and_steps_as_robosuites_hard_resets_do(
    task_key: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The env's constructor compiles the scene (or loads it from the scene cache, where a process
    # saved it); every reset, the first included, reuses that model (docs/performance.md). The
    # saved model must be the compiled one byte for byte, and the states and frames of two whole
    # short episodes on the loaded one those of LIBERO's own env, which compiles at every hard reset.
    import mujoco
    from libero.libero import benchmark, get_libero_path
    from libero.libero.envs import OffScreenRenderEnv
    from robosuite.utils.binding_utils import MjSim

    from pytest_vla.report.schema import Stage
    from pytest_vla.suites.base import StateConvention
    from pytest_vla.suites.libero import LiberoSuite, scenes
    from pytest_vla.suites.libero import env as libero_env

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(scenes._Process, "compiled", False)  # this process's first compile: saved
    suite = LiberoSuite()
    (task,) = suite.resolve_tasks([task_key])
    first = suite.make_env(task, (), SEED, StateConvention())
    xml = first._env.env.model.get_xml()
    first.close()
    (saved,) = scenes.cache_directory().glob("*.mjb")
    assert _model_bytes(mujoco.MjModel.from_binary_path(str(saved))) == _model_bytes(
        mujoco.MjModel.from_xml_string(xml)
    )
    compiles, scene_models = [], []
    robosuite_compile, scene_model = MjSim.from_xml_string, libero_env.scene_model
    monkeypatch.setattr(MjSim, "from_xml_string", lambda xml: compiles.append(1) or robosuite_compile(xml))
    monkeypatch.setattr(libero_env, "scene_model", lambda xml: scene_models.append(1) or scene_model(xml))
    monkeypatch.setattr(mujoco.MjModel, "from_xml_string", None, raising=False)  # the constructor loads
    actions = np.random.default_rng(3).uniform(-0.6, 0.6, size=(12, 7))
    actions[:, 6] = np.where(np.arange(12) % 6 < 3, -1.0, 1.0)  # the gripper opens and closes
    ours, theirs = [], []
    env = suite.make_env(task, ("agentview",), SEED, StateConvention())
    try:
        for episode in (0, 1):
            observation = env.reset(episode)
            ours.append((observation.raw["robot0_proprio-state"], observation.images["agentview"]))
            # After the reset the arm is clear of everything, nothing is where the goal wants it, and
            # nothing has moved yet.
            reading = observation.goal
            assert reading is not None and reading.stages and set(reading.stages.values()) == {Stage.UNTOUCHED}
            assert reading.bystanders and max(np.abs(moved).max() for moved in reading.bystanders.values()) == 0
            for action in actions:
                observation, done = env.step(action)
                ours.append((observation.raw["robot0_proprio-state"], observation.images["agentview"]))
                # The goal's conditions, read at every step: LIBERO's success is their conjunction.
                assert observation.goal and done == all(observation.goal.conditions.values())
    finally:
        env.close()
    assert (len(scene_models), len(compiles)) == (1, 0)  # loaded once, never compiled again
    monkeypatch.undo()
    family, _, index = task_key.partition(":")
    benchmark_suite = benchmark.get_benchmark_dict()[family]()
    libero_task = benchmark_suite.get_task(int(index))
    reference = OffScreenRenderEnv(
        bddl_file_name=os.path.join(get_libero_path("bddl_files"), libero_task.problem_folder, libero_task.bddl_file),
        camera_heights=256,
        camera_widths=256,
    )
    try:
        for episode in (0, 1):
            reference.seed(SEED)
            reference.reset()
            reference.set_init_state(benchmark_suite.get_task_init_states(int(index))[episode])
            for _ in range(10):
                raw, _, _, _ = reference.step([0.0] * 6 + [-1.0])
            theirs.append((raw["robot0_proprio-state"], raw["agentview_image"][::-1, ::-1]))
            for action in actions:
                raw, _, _, _ = reference.step(action.tolist())
                theirs.append((raw["robot0_proprio-state"], raw["agentview_image"][::-1, ::-1]))
    finally:
        reference.close()
    for (state, frame), (their_state, their_frame) in zip(ours, theirs, strict=True):
        np.testing.assert_array_equal(state, their_state)
        np.testing.assert_array_equal(frame, their_frame)
    assert not np.array_equal(ours[0][1], ours[-1][1])  # the arm moved in the frames: the comparison sees it


def _model_bytes(model) -> bytes:
    """Everything a MuJoCo model holds, as mj_saveModel writes it."""
    import mujoco

    buffer = np.zeros(mujoco.mj_sizeModel(model), dtype=np.uint8)
    mujoco.mj_saveModel(model, None, buffer)
    return buffer.tobytes()


@pytest.mark.libero
def test_the_goal_reading_sees_contacts_as_robosuite_does_and_a_bystander_moved_on_purpose() -> None:
    from pytest_vla.report.schema import goal_record, side_effects
    from pytest_vla.rollout.loop import EpisodeOutcome
    from pytest_vla.suites.base import StateConvention
    from pytest_vla.suites.libero import LiberoSuite
    from pytest_vla.suites.libero.goal import ContactGeoms, _touching

    suite = LiberoSuite()
    (task,) = suite.resolve_tasks(["libero_object:2"])
    env = suite.make_env(task, (), SEED, StateConvention())
    outcome = EpisodeOutcome(terminal_reason=None, n_steps=0, wall_clock_s=0.0)  # type: ignore[arg-type]
    try:
        observation = env.reset(0)
        outcome.see_goal(observation)
        problem = env._env.env
        models = {**problem.objects_dict, **problem.fixtures_dict}
        masks = ContactGeoms.of(problem, {name: [] for name in models})
        gripper, touched = problem.robots[0].gripper, set()
        # Down onto the scene with the gripper open, then closed: robosuite's name-by-name contact checks
        # and the reading's by geom id must agree at every step, on every object and fixture.
        for step in range(45):
            observation, _ = env.step(np.array([0, 0, -1.0, 0, 0, 0, -1.0 if step < 30 else 1.0]))
            outcome.n_steps += 1
            outcome.see_goal(observation)
            pairs = problem.sim.data._data.contact.geom[: problem.sim.data._data.ncon]
            for name, model in models.items():
                theirs = problem.check_contact(gripper, model)
                assert _touching(pairs, masks.gripper, masks.objects[name]) == theirs, (step, name)
                touched |= {name} if theirs else set()
        assert touched  # the arm reached something: the comparison is not vacuous
        # A bystander pushed 12 cm aside by hand (its free joint), then one more step.
        bystander = next(iter(observation.goal.bystanders))
        address = problem.sim.model.get_joint_qpos_addr(problem.objects_dict[bystander].joints[-1])[0]
        problem.sim.data.qpos[address] += 0.12
        problem.sim.forward()
        observation, _ = env.step(np.zeros(7))
        outcome.see_goal(observation)
    finally:
        env.close()
    goal = goal_record(outcome.goal_at_end, outcome.goal_best, outcome.goal_best_step, outcome.furthest_stages)
    disturbed = side_effects(goal, outcome.bystander_moves, outcome.bystander_drops)
    effects = {effect["object"]: effect for effect in disturbed or []}
    assert effects[bystander]["moved_m"] == pytest.approx(0.12, abs=0.01) and not effects[bystander]["fell"]
    assert set(effects) - {bystander} <= touched  # anything else disturbed, the arm pushed
    # The goal puts the salad dressing in the basket; the arm came down on it.
    assert goal["furthest_stages"] == {"salad_dressing_1": "touched" if "salad_dressing_1" in touched else "untouched"}


@pytest.mark.parametrize(
    ("selection", "fixture"), [("libero_goal:0", "wooden_cabinet_1"), ("libero_goal:7", "flat_stove_1")]
)
def test_a_jointed_fixture_is_moved_a_quarter_of_the_way_and_at_goal_where_libero_says_so(
    selection: str, fixture: str
) -> None:
    from pytest_vla.report.schema import Stage
    from pytest_vla.rollout.loop import EpisodeOutcome
    from pytest_vla.suites.base import StateConvention
    from pytest_vla.suites.libero import LiberoSuite

    # Open the middle drawer (its joint goes down to open, a drawer region of the cabinet) and turn
    # on the stove (its knob goes up, the fixture itself): each joint set by hand, then one step.
    suite = LiberoSuite()
    (task,) = suite.resolve_tasks([selection])
    env = suite.make_env(task, (), SEED, StateConvention())
    outcome = EpisodeOutcome(terminal_reason=None, n_steps=0, wall_clock_s=0.0)  # type: ignore[arg-type]
    seen = []
    try:
        outcome.see_goal(env.reset(0))
        problem = env._env.env
        (joint,) = env._at_reset.joints[fixture]
        for share in (0.0, 0.15, 0.4, 1.1):
            problem.sim.data.qpos[joint.addresses] = joint.start + share * (joint.threshold - joint.start)
            problem.sim.forward()
            observation, done = env.step(np.zeros(7))
            outcome.n_steps += 1
            outcome.see_goal(observation)
            seen.append((observation.goal.stages[fixture].value, done))
    finally:
        env.close()
    # Done is LIBERO's own success: the threshold the stage counts the way to is LIBERO's.
    assert seen == [("untouched", False), ("untouched", False), ("moved", False), ("at_goal", True)]
    assert outcome.furthest_stages == {fixture: Stage.AT_GOAL}


def test_every_libero_articulated_object_opens_closes_and_turns_where_its_threshold_says() -> None:
    import inspect

    from libero.libero.envs.objects import articulated_objects

    from pytest_vla.suites.libero.goal import ARTICULATED, joint_threshold

    methods = {"open": "is_open", "close": "is_close", "turnon": "turn_on", "turnoff": "turn_off"}
    checked = set()
    for name, kind in inspect.getmembers(articulated_objects, inspect.isclass):
        if not issubclass(kind, articulated_objects.ArticulatedObject) or kind is articulated_objects.ArticulatedObject:
            continue
        found = kind()
        for predicate in ARTICULATED:
            holds = getattr(found, methods[predicate], None)
            threshold = joint_threshold(found.object_properties["articulation"], predicate)
            if threshold is None:
                if holds is not None:  # only where LIBERO cannot evaluate the predicate on this object either
                    with pytest.raises(NotImplementedError):
                        holds(0.0)
                continue
            at, direction = threshold
            assert (holds(at - direction * 1e-3), holds(at + direction * 1e-3)) == (False, True), (name, predicate)
            checked.add((name, predicate))
    # Both ways round: drawers that open downwards and upwards, the microwave, the stoves' knobs.
    assert {
        ("WoodenCabinet", "open"),
        ("ShortCabinet", "open"),
        ("Microwave", "close"),
        ("FlatStove", "turnon"),
    } <= checked
