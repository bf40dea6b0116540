"""User simulators that play the customer: goal, guide and replay."""

from josh.users.simulators import (
    GoalUserSimulator,
    GuideUserSimulator,
    ReplayUserSimulator,
    UserSimulator,
    UserTools,
    UserTurn,
)

__all__ = [
    "GoalUserSimulator",
    "GuideUserSimulator",
    "ReplayUserSimulator",
    "UserSimulator",
    "UserTools",
    "UserTurn",
]
