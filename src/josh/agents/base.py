"""What an agent is: something that turns the conversation so far into one agent turn."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from josh.types import AssistantMessage, Message, ToolCall, Usage

ToolExecutor = Callable[[str, Any], Any]
"""Runs one tool call, `(name, arguments) -> result`; the result is JSON-serialisable. Never raises."""


@dataclass(frozen=True)
class ExecutedCall:
    """A tool call the agent made in a turn and what it returned."""

    call: ToolCall
    result: Any


@dataclass
class AgentTurn:
    """One agent turn: the reply the customer sees, and everything the agent itself saw and did."""

    message: AssistantMessage
    internal: list[Message] = field(default_factory=list)  # new internal messages, in order
    calls: list[ExecutedCall] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    model_calls: int = 0
    notes: list[str] = field(default_factory=list)  # protocol errors the model made (recorded, not fatal)


class Agent(Protocol):
    """An agent policy. `internal` is the agent's own view of the conversation so far (without system prompt)."""

    name: str

    async def step(
        self, internal: Sequence[Message], execute: ToolExecutor, *, metadata: Mapping[str, str] | None = None
    ) -> AgentTurn: ...
