"""One conversation: agent turn, user turn, tool execution, stop conditions."""

from josh.rollout.conversation import ToolSession, run_conversation
from josh.rollout.record import CallResult, RolloutRecord

__all__ = ["CallResult", "RolloutRecord", "ToolSession", "run_conversation"]
