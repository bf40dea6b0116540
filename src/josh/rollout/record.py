"""What one conversation leaves behind: the rollout record, one JSONL line of a run."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from josh.types import Message, ModelCall, Record, Reward, Usage, omitted_when_empty

# agent_error: with strict errors, the agent broke the tool protocol where the reference crashes (reward 0);
# user_error: the same, by a customer with tools of its own (tau2's telecom phone; tau2's USER_ERROR).
Termination = Literal["user_ended", "max_turns", "agent_error", "user_error", "error"]


class CallResult(Record):
    """One tool call of the conversation, in order, with the agent turn it was made in (a customer's call:
    the number of agent turns before it; customer turn k comes before agent turn k)."""

    turn: int
    name: Any
    arguments: Any
    result: Any
    rewards: list[str] = Field(default_factory=list)  # goal calls this call met (reward events)


class RolloutRecord(Record):
    """A finished conversation: scored, or failed with an error (then `reward` is None)."""

    task_id: str
    trial: int = 0
    seed: int | None = None
    status: Literal["success", "error"]
    termination: Termination
    reward: Reward | None
    partial_reward: Reward = 0.0  # the score of the calls made before an error (== reward on success)
    goal_calls: list[str] = Field(default_factory=list)
    failed_goals: list[str] = Field(default_factory=list)
    domains: list[str] = Field(default_factory=list)  # the benchmark's domains (none: read from goal names)
    reward_events: list[str] = Field(default_factory=list)  # goals met, in order, by either side's calls
    calls: list[CallResult] = Field(default_factory=list)
    messages: list[Message] = Field(default_factory=list)  # what the customer and the agent said
    internal: list[Message] = Field(default_factory=list)  # the agent's own view: plans, calls, results
    agent_usage: Usage = Field(default_factory=Usage)
    user_usage: Usage = Field(default_factory=Usage)
    agent_model_calls: int = 0
    user_model_calls: int = 0
    latency_s: float = 0.0
    error: str | None = None
    notes: list[str] = Field(default_factory=list)
    model_calls: list[ModelCall] = Field(default_factory=list)  # every model call, finished or failed
    # The customer's own tool calls (tau2's telecom: its phone), in order. Left out of dumps when empty, so
    # the run files of environments whose customers have no tools (ToolWOZ) do not change.
    user_calls: list[CallResult] = Field(default_factory=list, exclude_if=omitted_when_empty)

    @property
    def key(self) -> tuple[str, int]:
        return (self.task_id, self.trial)
