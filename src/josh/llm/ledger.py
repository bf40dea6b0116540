"""A ledger of every model call of a conversation, kept whatever happens after the call.

A turn can make several model calls and fail on a later one; the calls that finished were still billed.
`CallLedger.wrap(model, role)` returns a chat model that forwards every call and appends one `ModelCall` per
`chat()` (its usage on success, its error on failure), so a record's tokens equal what the server billed.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

from josh.llm.base import ChatModel
from josh.types import AssistantMessage, Message, ModelCall, Usage, clean_text

_ERROR_CHARS = 500


class CallLedger:
    """The `ModelCall`s of the models it wrapped, in the order they ended."""

    def __init__(self) -> None:
        self.calls: list[ModelCall] = []

    def wrap(self, model: ChatModel, role: str) -> ChatModel:
        """`model` as a chat model that records each of its `chat()` calls here under `role`."""
        return LedgeredChatModel(model, role, self)

    def usage(self, role: str | None = None) -> Usage:
        """The summed usage of the calls (of one `role`, or all); cost None when any call is unpriced."""
        return Usage.total(call for call in self.calls if role is None or call.role == role)

    def count(self, role: str | None = None, *, failed: bool | None = None) -> int:
        """How many calls (of one `role`; only failed ones with `failed=True`, only successful with False)."""
        return sum(
            1
            for call in self.calls
            if (role is None or call.role == role) and (failed is None or (call.error is not None) == failed)
        )


class LedgeredChatModel:
    """A `ChatModel` proxy that appends one `ModelCall` to its ledger per `chat()` call.

    Other attributes (`adaptations`, `list_models`, ...) are read from the wrapped model.
    """

    def __init__(self, model: ChatModel, role: str, ledger: CallLedger) -> None:
        self.model = model
        self.role = role
        self.ledger = ledger

    @property
    def name(self) -> str:
        return self.model.name

    def __getattr__(self, attribute: str) -> Any:
        if attribute == "model":  # not set yet (copy, pickle): no recursion through __getattr__
            raise AttributeError(attribute)
        return getattr(self.model, attribute)

    def __repr__(self) -> str:
        return f"LedgeredChatModel({self.model!r}, role={self.role!r})"

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
        """Forward to the wrapped model; record the call whatever comes of it (exceptions re-raised as is)."""
        start = time.perf_counter()
        try:
            replies = await self.model.chat(
                messages,
                tools=tools,
                n=n,
                temperature=temperature,
                max_tokens=max_tokens,
                seed=seed,
                metadata=metadata,
            )
        except Exception as exc:
            self.ledger.calls.append(
                ModelCall(
                    role=self.role,
                    n=n,
                    cost=0.0,  # no tokens were reported, so none are priced
                    latency_s=time.perf_counter() - start,
                    error=_one_line(exc),
                )
            )
            raise
        usage = Usage.total(reply.usage for reply in replies if reply.usage is not None)
        self.ledger.calls.append(
            ModelCall(
                role=self.role,
                n=n,
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
                cost=usage.cost,
                cached=bool(replies)
                and all(reply.usage is not None and reply.usage.cached for reply in replies),
                latency_s=time.perf_counter() - start,
            )
        )
        return replies

    async def check(self) -> None:
        """The wrapped model's preflight, if it has one."""
        check = getattr(self.model, "check", None)
        if check is not None:
            await check()

    async def aclose(self) -> None:
        await self.model.aclose()


def _one_line(exc: BaseException) -> str:
    text = " ".join(clean_text(str(exc)).split()) or type(exc).__name__
    text = f"{type(exc).__name__}: {text}"
    return text if len(text) <= _ERROR_CHARS else text[: _ERROR_CHARS - 1] + "…"
