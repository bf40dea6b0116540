"""The records of the tau2 adapter: tasks as josh sees them, goal actions, and what a session records.

All frozen: snapshots and forks share them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from josh.types import GOAL_KEY_SEPARATOR

Requestor = Literal["assistant", "user"]
SPLITS = ("train", "test", "base")
# What tau2's user simulator says to end a conversation (tau2/user/base.py: STOP, TRANSFER, OUT_OF_SCOPE; a
# test keeps them equal). Any of them in a customer message ends it (tau2's `UserSimulator.is_stop`).
STOP_TOKENS = ("###STOP###", "###TRANSFER###", "###OUT-OF-SCOPE###")
# The agent's first message in every tau2 simulation (tau2/orchestrator/orchestrator.py,
# DEFAULT_FIRST_AGENT_MESSAGE; that module imports litellm, so a test reads the file): the customer answers it.
AGENT_GREETING = "Hi! How can I help you today?"

_MISSING = object()


@dataclass(frozen=True)
class GoalAction:
    """One action of a task's `evaluation_criteria.actions`: a sparse reward goal for JOSH.

    `name` is the tool's name (as ToolWOZ's goal calls are named by their API); `action_id` is unique within
    the task. `requestor` is "assistant" for the agent's tools and "user" for the customer's (telecom).
    """

    action_id: str
    name: str
    requestor: Requestor
    arguments: dict[str, Any]
    compare_args: tuple[str, ...] | None = None

    @property
    def key(self) -> str:
        """The goal's name in JOSH's trees and harvest records: `tool#action_id`, since a task often has
        several actions of one tool (retail: most tasks). The part before `#` is the tool."""
        return f"{self.name}{GOAL_KEY_SEPARATOR}{self.action_id}"

    def met_by(self, name: str, requestor: str, arguments: dict[str, Any]) -> bool:
        """Strict matching: same tool and requestor; arguments equal to the goal's (all of them, or only
        those in `compare_args` when it is set; an empty `compare_args` means the name alone). Unlike
        tau2's `Action.compare_with_tool_call`, a call with `{}` does not match every action of its name."""
        if name != self.name or requestor != self.requestor:
            return False
        if self.compare_args is None:
            return arguments == self.arguments
        keys = self.compare_args
        return {k: v for k, v in arguments.items() if k in keys} == {
            k: v for k, v in self.arguments.items() if k in keys
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "action_id": self.action_id,
            "name": self.name,
            "requestor": self.requestor,
            "arguments": self.arguments,
            "compare_args": list(self.compare_args) if self.compare_args is not None else None,
        }


@dataclass(frozen=True)
class Tau2Task:
    """A tau2-bench task, with what each side of a conversation needs.

    - the customer: `user_instructions` (tau2 passes `str(task.user_scenario)` to its user simulator) and
      `user_system_prompt` (tau2's guidelines + that scenario, exactly as tau2's `UserSimulator` builds it);
    - the agent: `policy` (the domain policy tau2's agent puts in its system prompt);
    - JOSH: `goal_actions` (the sparse rewards);
    - the final score: `source`, tau2's own `Task`, given to tau2's evaluators.
    """

    domain: str
    task_id: str
    splits: tuple[str, ...]
    user_instructions: str
    user_system_prompt: str
    policy: str
    goal_actions: tuple[GoalAction, ...]
    reward_basis: tuple[str, ...]
    communicate_info: tuple[str, ...] = ()
    nl_assertions: tuple[str, ...] = ()
    source: Any = field(default=None, repr=False, compare=False)

    @property
    def goal_calls(self) -> tuple[GoalAction, ...]:
        """The goals under the name ToolWOZ's tasks use (records and summaries read `goal_calls`)."""
        return self.goal_actions

    @property
    def split(self) -> str:
        """The task's train/test split (tau2's base tasks are in exactly one), else its first split."""
        return next((s for s in self.splits if s in ("train", "test")), self.splits[0] if self.splits else "")

    def to_dict(self) -> dict[str, Any]:
        return {
            "domain": self.domain,
            "task_id": self.task_id,
            "splits": list(self.splits),
            "user_instructions": self.user_instructions,
            "goal_actions": [g.to_dict() for g in self.goal_actions],
            "reward_basis": list(self.reward_basis),
            "communicate_info": list(self.communicate_info),
            "nl_assertions": list(self.nl_assertions),
        }


@dataclass(frozen=True)
class CallRecord:
    """One tool call of a conversation, by the agent (`requestor` "assistant") or the customer ("user").

    `result` is tau2's tool message content, verbatim (a string: JSON for data, "Error: ..." for errors);
    `error` is tau2's error flag. `call_id` links the call to its result in the tau2 trajectory; a call
    tau2 cannot represent (a name that is not a string, arguments that are not a JSON object) ran nowhere,
    answered with an error, and has `call_id` None: it is not part of the trajectory tau2 evaluates.
    `rewards` are the names of the goal actions it met (at most one).
    """

    name: Any
    arguments: Any
    result: str
    error: bool
    requestor: Requestor = "assistant"
    call_id: str | None = None
    rewards: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "arguments": self.arguments,
            "result": self.result,
            "error": self.error,
            "requestor": self.requestor,
            "call_id": self.call_id,
            "rewards": list(self.rewards),
        }


@dataclass(frozen=True)
class TextRecord:
    """Something the agent ("assistant") or the customer ("user") said, kept for tau2's evaluators (the
    communicate check reads the agent's messages)."""

    role: Requestor
    content: str
