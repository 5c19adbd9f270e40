"""The MetaWorld suite against LeRobot's loop (tests/lerobot_metaworld.py): same states, actions and frames."""

from __future__ import annotations

import numpy as np
import pytest

from pytest_vla.rollout.loop import run_episode
from pytest_vla.suites.base import StateConvention
from pytest_vla.suites.metaworld import MetaworldSuite
from pytest_vla.suites.metaworld.expert import ScriptedExperts
from pytest_vla.suites.metaworld.suite import task_name
from tests import lerobot_metaworld

pytestmark = pytest.mark.metaworld

SEED = 1000  # lerobot-eval's


def _expert(name: str):
    from metaworld import policies

    from pytest_vla.suites.metaworld.tasks import EXPERT_POLICIES

    expert = getattr(policies, EXPERT_POLICIES[name])()
    return lambda observation: expert.get_action(observation["raw"])


@pytest.mark.parametrize("selection", ["reach-v3", "metaworld_medium:push-wall-v3", "pick-place-v3", "door-open-v3"])
def test_episodes_equal_lerobots_in_any_order(selection: str) -> None:
    suite = MetaworldSuite()
    (task,) = suite.resolve_tasks([selection])
    env = suite.make_env(task, (), SEED, StateConvention())
    policy = ScriptedExperts()
    try:
        ours = {}
        for episode in (2, 0, 1):  # out of order, one env for all: lerobot-eval makes one env per episode
            policy.begin_episode(SEED, task, episode)
            ours[episode] = run_episode(env, policy, episode, max_steps=150)
    finally:
        env.close()
    name = task_name(task)
    try:
        references = {  # in order, in one env, as one sub-env of lerobot-eval's runs them
            episode: lerobot_metaworld.episode(name, SEED + episode, _expert(name), max_steps=150, render=False)
            for episode in (0, 1, 2)
        }
    finally:
        lerobot_metaworld.close()
    for episode, outcome in ours.items():
        reference = references[episode]
        np.testing.assert_array_equal(np.array(outcome.actions), np.array(reference["actions"]))
        # The state a policy reads is float32, as LeRobot's preprocessing makes agent_pos.
        agent_pos = np.array(reference["states"][:-1])[:, :4].astype(np.float32)
        np.testing.assert_array_equal(np.array(outcome.states), agent_pos)
        assert (outcome.success, outcome.n_steps) == (reference["success"], reference["steps"])
    assert not np.array_equal(ours[0].actions[:20], ours[1].actions[:20])  # the seeds do move the objects


def test_the_rendered_frame_is_lerobots_and_rendering_changes_no_state() -> None:
    suite = MetaworldSuite()
    (task,) = suite.resolve_tasks(["metaworld:push-v3"])
    frames, states = [], {}
    for cameras in (("corner2",), ()):
        env = suite.make_env(task, cameras, SEED, StateConvention())
        policy = ScriptedExperts()
        try:
            policy.begin_episode(SEED, task, 1)
            observation = env.reset(1)
            trail = [observation.raw["observation"]]
            for _ in range(3):
                if cameras:
                    frames.append(observation.images["corner2"])
                observation, _ = env.step(policy.act(observation)[0])
                trail.append(observation.raw["observation"])
            states[cameras] = np.array(trail)
        finally:
            env.close()
    np.testing.assert_array_equal(states[("corner2",)], states[()])
    reference = []
    expert = _expert("push-v3")
    try:
        lerobot_metaworld.episode(
            "push-v3", SEED + 1, lambda o: reference.append(o["pixels"]) or expert(o), max_steps=3
        )
    finally:
        lerobot_metaworld.close()
    assert frames[0].shape == (480, 480, 3) and frames[0].std() > 10  # a scene, not a blank
    for ours, theirs in zip(frames, reference, strict=True):
        np.testing.assert_array_equal(ours, theirs)


def test_tasks_are_selected_by_family_index_and_name() -> None:
    suite = MetaworldSuite()
    assert len(suite.resolve_tasks([])) == 50  # the four difficulty groups
    assert [t.key for t in suite.resolve_tasks(["metaworld_hard"])] == [f"metaworld_hard:{i}" for i in range(6)]
    by_name, by_index, bare = (
        suite.resolve_tasks([entry]) for entry in ("metaworld:push-v3", "metaworld:40", "push-v3")
    )
    assert by_name == by_index == bare
    assert by_name[0].instruction == "Push the puck to a goal" and by_name[0].max_steps == 500
    # A task selected twice, through two families, runs once (under the first).
    twice = suite.resolve_tasks(["metaworld_hard", "metaworld", "push-v3"])
    assert len(twice) == 50 and len({task.name for task in twice}) == 50
    assert [task.key for task in twice[:6]] == [f"metaworld_hard:{i}" for i in range(6)]


def test_every_mt50_task_names_an_object_its_model_has() -> None:
    from pytest_vla.suites.metaworld.env import build_env
    from pytest_vla.suites.metaworld.goal import OBJECTS, GoalReader
    from pytest_vla.suites.metaworld.tasks import MT50

    assert set(OBJECTS) == set(MT50)
    bystanders = {}
    for name in MT50:
        env = build_env(name, render=False)
        try:
            reader = GoalReader.of(env.model, name)
            assert reader.geoms.any() and not (reader.geoms & reader.hand).any(), name
            assert all((pad <= reader.hand).all() for pad in reader.pads), name  # a grasp is a touch
            bystanders.update({name: set(reader.bystanders)} if reader.bystanders else {})
        finally:
            env.close()
    # Only the coffee machine's scenes hold another object that can move: the mug below the button,
    # the button above the mug (the hammer's nail and the stick's container are what they move).
    assert bystanders == {"coffee-button-v3": {"obj"}, "coffee-pull-v3": {"cmbutton"}, "coffee-push-v3": {"cmbutton"}}


@pytest.mark.filterwarnings("ignore:Constant\\(s\\) may be too high")
def test_every_jointed_object_is_moved_by_its_expert_before_success_and_not_by_doing_nothing() -> None:
    from pytest_vla.suites.metaworld.goal import OBJECTS

    suite = MetaworldSuite()
    jointed = {name: found for name, found in OBJECTS.items() if found.travel is not None}
    assert len(jointed) == 21  # the buttons, dial, doors, drawers, faucets, handles, lever and windows
    for name, found in jointed.items():
        (task,) = suite.resolve_tasks([name])
        env = suite.make_env(task, (), SEED, StateConvention())
        try:
            observation, expert, seen = env.reset(0), _expert(name), []
            for _ in range(200):
                observation, done = env.step(np.asarray(expert({"raw": observation.raw["observation"]})))
                seen.append(observation.goal.stages[found.name].value)
                if done:
                    break
            assert seen[-1] == "at_goal" and "moved" in seen, (name, seen)
            env.reset(0)
            idle = {env.step(np.zeros(4))[0].goal.stages[found.name].value for _ in range(100)}
            assert "moved" not in idle, name
        finally:
            env.close()


def test_a_bystander_is_watched_from_where_the_reset_left_it_and_one_pushed_by_hand_is_a_side_effect() -> None:
    from pytest_vla.report.schema import goal_record, side_effects
    from pytest_vla.rollout.loop import EpisodeOutcome

    suite = MetaworldSuite()
    effects = {}
    for name, push in (("coffee-push-v3", 0.0), ("coffee-button-v3", 0.12)):
        (task,) = suite.resolve_tasks([name])
        env = suite.make_env(task, (), SEED, StateConvention())
        outcome = EpisodeOutcome(terminal_reason=None, n_steps=0, wall_clock_s=0.0)  # type: ignore[arg-type]
        try:
            outcome.see_goal(env.reset(0))
            for step in range(20):
                if step == 10 and push:  # the mug beside the button, pushed along x by its free joint
                    model = env._env.model
                    env._env.data.qpos[model.jnt_qposadr[model.body_jntadr[env._goal.bystanders["obj"]]]] += push
                observation, _ = env.step(np.zeros(4))
                outcome.n_steps += 1
                outcome.see_goal(observation)
        finally:
            env.close()
        goal = goal_record(outcome.goal_at_end, outcome.goal_best, outcome.goal_best_step, outcome.furthest_stages)
        effects[name] = side_effects(goal, outcome.bystander_moves, outcome.bystander_drops)
    # coffee-push's reset moves the coffee machine 6 cm without computing where its button now is:
    # measured from there, the button still stands where the reset left it.
    assert effects["coffee-push-v3"] == []
    (effect,) = effects["coffee-button-v3"]
    assert (effect["object"], effect["fell"]) == ("obj", False) and effect["moved_m"] == pytest.approx(0.12, abs=0.01)
