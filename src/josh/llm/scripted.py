"""A deterministic in-process chat model for tests: a policy function answers every call."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from josh.types import AssistantMessage, Message, Usage


@dataclass(frozen=True)
class ChatRequest:
    """What a policy sees of one call."""

    messages: tuple[Message, ...]
    tools: tuple[Mapping[str, Any], ...] | None
    temperature: float
    seed: int | None
    metadata: Mapping[str, str]
    index: int  # which of the `n` completions is being produced


Policy = Callable[[ChatRequest], "AssistantMessage | str | Awaitable[AssistantMessage | str]"]


@dataclass
class ScriptedChatModel:
    """Answers with `policy(request)`; a string becomes an assistant message. Counts calls; no network."""

    policy: Policy
    name: str = "scripted"
    calls: int = field(default=0, init=False)

    async def chat(
        self,
        messages: Sequence[Message],
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        n: int = 1,
        temperature: float = 0.0,
        max_tokens: int | None = None,
        seed: int | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> list[AssistantMessage]:
        out = []
        for index in range(n):
            self.calls += 1
            request = ChatRequest(
                tuple(messages),
                tuple(tools) if tools else None,
                temperature,
                seed,
                dict(metadata or {}),
                index,
            )
            reply = self.policy(request)
            if inspect.isawaitable(reply):
                reply = await reply
            if isinstance(reply, str):
                reply = AssistantMessage(content=reply)
            if reply.usage is None:
                reply = reply.model_copy(update={"usage": Usage(), "model": self.name, "latency_s": 0.0})
            out.append(reply)
        return out

    async def check(self) -> None:
        """Nothing to reach: always ready."""
        return None

    async def aclose(self) -> None:
        return None
