"""What an agent is: something that turns the conversation so far into one agent turn."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from josh.agents.prompts import OUT_OF_RETRIES
from josh.errors import ProtocolViolation
from josh.llm.base import ChatModel
from josh.types import AssistantMessage, Message, ToolCall, Usage


class AgentProtocolError(ProtocolViolation):
    """With `strict_errors`: the model broke the tool protocol where the reference crashes (reward 0)."""


ToolExecutor = Callable[[str, Any], Any]
"""Runs one tool call, `(name, arguments) -> result`; the result is JSON-serialisable. Never raises."""

ResultText = Callable[[Any], str]
"""How a tool result is shown to the agent, `result -> text`. The environment decides (its session's
`result_text`): ToolWOZ shows JSON, tau2 its own tool-message strings verbatim. The agent's own error
results (a malformed call) are shown the same way."""


def json_result_text(result: Any) -> str:
    """A result shown as JSON text (`json.dumps`): the default, and ToolWOZ's (the paper's) observation."""
    return json.dumps(result)


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


class AgentTurnError(Exception):
    """A turn that failed after it began. `turn` holds what was finished before the failure (messages, tool
    calls, notes, usage, model calls), so the record keeps it; `cause` is the failure (also `__cause__`)."""

    def __init__(self, turn: AgentTurn, cause: BaseException):
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.turn = turn
        self.cause = cause
        self.__cause__ = cause


class Agent(Protocol):
    """An agent policy. `internal` is the agent's own view of the conversation so far (without system prompt)."""

    name: str

    async def step(
        self,
        internal: Sequence[Message],
        execute: ToolExecutor,
        *,
        metadata: Mapping[str, str] | None = None,
        result_text: ResultText = json_result_text,
    ) -> AgentTurn: ...


@dataclass
class ModelAgent:
    """What both paper agents share: a model, the tool schemas, sampling settings and a 3-call budget a turn."""

    model: ChatModel
    tools: list[dict[str, Any]]
    temperature: float = 0.0
    max_tokens: int | None = 256  # the reference's request_openai default
    seed: int | None = 42  # the reference always sends seed 42
    max_model_calls: int = 3
    strict_errors: bool = False  # reproduce the reference's crashes (reward 0) on protocol errors

    async def step(
        self,
        internal: Sequence[Message],
        execute: ToolExecutor,
        *,
        metadata: Mapping[str, str] | None = None,
        result_text: ResultText = json_result_text,
    ) -> AgentTurn:
        """One agent turn. Any failure after the turn began is raised as `AgentTurnError` with the partial turn.

        `result_text` shows each tool result to the model (the rollout passes its session's `result_text`)."""
        turn = AgentTurn(message=AssistantMessage(content=OUT_OF_RETRIES))
        try:
            return await self._turn(turn, list(internal), execute, metadata, result_text)
        except Exception as exc:
            raise AgentTurnError(turn, exc) from exc

    async def _turn(
        self,
        turn: AgentTurn,
        history: list[Message],
        execute: ToolExecutor,
        metadata: Mapping[str, str] | None,
        result_text: ResultText,
    ) -> AgentTurn:
        """The turn itself: fills `turn` as it goes (so a failure leaves what was done) and returns it."""
        raise NotImplementedError

    async def _complete(
        self,
        messages: list[Message],
        turn: AgentTurn,
        *,
        tools: list[dict[str, Any]] | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> AssistantMessage:
        """One model call, counted and paid for in `turn`."""
        [reply] = await self.model.chat(
            messages,
            tools=tools,
            temperature=self.temperature,
            max_tokens=self.max_tokens,
            seed=self.seed,
            metadata=metadata,
        )
        turn.model_calls += 1
        if reply.usage:
            turn.usage = turn.usage + reply.usage
        return reply

    def _finish(self, turn: AgentTurn, content: str) -> AgentTurn:
        turn.message = AssistantMessage(content=content, usage=turn.usage, model=self.model.name)
        return turn
