"""ToolWOZ: MultiWOZ dialogues turned into tool-calling tasks with sparse rewards (Lattimer et al., 2024)."""

from josh.envs.toolwoz.data_model import GoalCall, Task, Turn
from josh.envs.toolwoz.env import CallRecord, ToolWOZEnvironment, ToolWOZSession

__all__ = ["CallRecord", "GoalCall", "Task", "ToolWOZEnvironment", "ToolWOZSession", "Turn"]
