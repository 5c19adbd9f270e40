"""Where an ALOHA episode stands with its goal: gym-aloha's own staged reward, read as conditions and stages.

gym-aloha scores every step 0..4 from the scene's contacts (its tasks' ``get_reward``), each level a
stage of the task; 4 is success. Level k counts as the goal's first k conditions held, so progress
(the most held at once) is the highest level reached over 4: a policy that lifted the cube and then
dropped it has 0.5. The reward is what ``env.step`` returns anyway: reading it costs nothing. The
scenes hold no object besides the ones the goal acts on, so nothing can be a side effect.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType

from pytest_vla.report.schema import Stage
from pytest_vla.suites.base import GoalReading

MAX_REWARD = 4


@dataclass(frozen=True)
class StagedGoal:
    """One task's reward levels 1..4 as conditions, and the stage each level puts its objects at."""

    objects: tuple[str, ...]  # the objects the goal acts on, by their geom names in gym-aloha's scene
    conditions: tuple[str, ...]  # level 1..4, in gym-aloha's own words (its get_reward's comments)
    stages: tuple[Stage, ...]  # level 0..4 -> the stage of every object

    def reading(self, reward: float) -> GoalReading:
        level = min(max(int(reward), 0), MAX_REWARD)
        return GoalReading(
            conditions={name: level > position for position, name in enumerate(self.conditions)},
            stages=dict.fromkeys(self.objects, self.stages[level]),
            bystanders={},
        )


GOALS = MappingProxyType(
    {
        # 1: the right gripper touches the box; 2: ... while it is off the table (lifted); 3: the left
        # gripper touches it (attempted transfer), on the table or not; 4: the left holds it in the air.
        "transfer_cube": StagedGoal(
            objects=("red_box",),
            conditions=(
                "right gripper touches red_box",
                "red_box lifted by the right gripper",
                "left gripper touches red_box (transfer attempted)",
                "red_box held off the table by the left gripper (transferred)",
            ),
            stages=(Stage.UNTOUCHED, Stage.TOUCHED, Stage.LIFTED, Stage.TOUCHED, Stage.AT_GOAL),
        ),
        # 1: the left gripper touches the socket and the right the peg; 2: both off the table; 3: the
        # peg touches the socket with neither on the table; 4: the peg touches the pin inside (inserted).
        "insertion": StagedGoal(
            objects=("red_peg", "socket"),
            conditions=(
                "grippers touch red_peg and socket",
                "red_peg and socket lifted",
                "red_peg touches socket in the air",
                "red_peg touches pin (inserted)",
            ),
            stages=(Stage.UNTOUCHED, Stage.TOUCHED, Stage.LIFTED, Stage.LIFTED, Stage.AT_GOAL),
        ),
    }
)
