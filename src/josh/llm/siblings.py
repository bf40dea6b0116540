"""n-sampling for sibling branches: their identical first requests become one call with `n` choices.

When a JOSH leaf splits, its children hold the same conversation, so their first model calls send the same
prompt. `SiblingGroup(model, size)` gives one chat model per sibling; each member's first `chat()` waits until
every member has either made its first call or been `release()`d (its turn ended without one), then the
identical requests are sent as one call with `n` = their number and each member gets one choice. A member
whose first request differs makes its own call; after its first call, a member forwards straight to `model`.
The prompt is paid once, and, put behind a `CallLedger`'s wrapper, the call is counted once (with its `n`).

Why `n` rather than separate calls: at a temperature above 0 with the same `seed`, separate calls to OpenAI
can return the very same sample, and the siblings would not differ. With `use_n=False` each member instead
adds its own `seed_shift` to the seed of every call it makes, so siblings sample differently there too.

A backend that returns fewer choices than asked (llama.cpp ignores `n`) is asked again for the rest, as
`OpenAIChatModel` itself does. The members must run concurrently (a member waits for its siblings).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from josh.llm.base import ChatModel, LLMError
from josh.types import AssistantMessage, Message


@dataclass(frozen=True)
class _Request:
    messages: tuple[Message, ...]
    tools: tuple[Mapping[str, Any], ...] | None
    temperature: float
    max_tokens: int | None
    seed: int | None
    metadata: tuple[tuple[str, str], ...]


@dataclass(eq=False)
class _Waiting:
    index: int
    request: _Request
    future: asyncio.Future[list[AssistantMessage]]
    batch: list[_Waiting] | None = None  # once sent: the members sharing its call, and the call
    call: asyncio.Task[None] | None = None


class SiblingGroup:
    """The chat models of `size` sibling branches over one `model` (see the module's docstring)."""

    def __init__(
        self,
        model: ChatModel,
        size: int,
        *,
        use_n: bool = True,
        seed_shifts: Sequence[int] | None = None,
    ) -> None:
        if size < 1:
            raise ValueError(f"a sibling group needs at least one member, got {size}")
        shifts = list(seed_shifts) if seed_shifts is not None else [0] * size
        if len(shifts) != size:
            raise ValueError(f"{size} members need {size} seed shifts, got {len(shifts)}")
        self.model = model
        self.use_n = use_n
        self.members = tuple(SiblingModel(self, index, shift) for index, shift in enumerate(shifts))
        self._waiting: list[_Waiting] = []
        self._settled: set[int] = set()  # members that made their first call or were released
        self._calls: set[asyncio.Task[None]] = set()

    async def _first(self, index: int, request: _Request) -> list[AssistantMessage]:
        waiting = _Waiting(index, request, asyncio.get_running_loop().create_future())
        self._waiting.append(waiting)
        self._dispatch_when_ready()
        try:
            return await waiting.future
        except asyncio.CancelledError:
            if waiting in self._waiting:  # cancelled before its call went out: stop waiting for it
                self._waiting.remove(waiting)
                self._settled.add(index)
                self._dispatch_when_ready()
            elif waiting.call is not None and all(w.future.done() for w in waiting.batch or []):
                waiting.call.cancel()  # nobody is left to take its choices
            raise

    def _release(self, index: int) -> None:
        if index in self._settled or any(w.index == index for w in self._waiting):
            return
        self._settled.add(index)
        self._dispatch_when_ready()

    def _dispatch_when_ready(self) -> None:
        if not self._waiting or len(self._waiting) + len(self._settled) < len(self.members):
            return
        batches: list[list[_Waiting]] = []
        for waiting in self._waiting:
            same = next((b for b in batches if b[0].request == waiting.request), None)
            if same is None:
                batches.append([waiting])
            else:
                same.append(waiting)
        self._settled.update(w.index for w in self._waiting)
        self._waiting = []
        for batch in batches:
            call = asyncio.ensure_future(self._call(batch))
            self._calls.add(call)
            call.add_done_callback(self._calls.discard)
            for waiting in batch:
                waiting.batch, waiting.call = batch, call

    async def _call(self, batch: list[_Waiting]) -> None:
        """One call for the whole batch; each member gets one choice (or the call's exception)."""
        request = batch[0].request
        replies: list[AssistantMessage] = []
        try:
            while len(replies) < len(batch):
                got = await self.model.chat(
                    request.messages,
                    tools=request.tools,
                    n=len(batch) - len(replies),
                    temperature=request.temperature,
                    max_tokens=request.max_tokens,
                    seed=request.seed,
                    metadata=dict(request.metadata),
                )
                if not got:
                    raise LLMError(f"{self.model.name} returned no completion")
                replies.extend(got)
        except BaseException as exc:
            for waiting in batch:
                if not waiting.future.done():
                    if isinstance(exc, asyncio.CancelledError):
                        waiting.future.cancel()
                    else:
                        waiting.future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for waiting, reply in zip(batch, replies, strict=False):
            if not waiting.future.done():
                waiting.future.set_result([reply])


class SiblingModel:
    """One sibling's chat model (made by `SiblingGroup`). `release()` when its turn ends."""

    def __init__(self, group: SiblingGroup, index: int, seed_shift: int) -> None:
        self.group = group
        self.index = index
        self.seed_shift = seed_shift
        self._first_done = False

    @property
    def name(self) -> str:
        return self.group.model.name

    def __repr__(self) -> str:
        return f"SiblingModel({self.group.model!r}, index={self.index}, seed_shift={self.seed_shift})"

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
        """The first call of a member with `n=1` is shared with its siblings; any other goes straight out."""
        if seed is not None:
            seed += self.seed_shift
        first = not self._first_done
        self._first_done = True
        if first and n == 1 and self.group.use_n:
            request = _Request(
                tuple(messages),
                tuple(tools) if tools else None,
                temperature,
                max_tokens,
                seed,
                tuple(sorted((str(k), str(v)) for k, v in (metadata or {}).items())),
            )
            return await self.group._first(self.index, request)
        if first:
            self.group._release(self.index)
        return await self.group.model.chat(
            messages,
            tools=tools,
            n=n,
            temperature=temperature,
            max_tokens=max_tokens,
            seed=seed,
            metadata=metadata,
        )

    def release(self) -> None:
        """This member makes no first call now (its turn ended): its siblings stop waiting for it."""
        self._first_done = True
        self.group._release(self.index)

    async def aclose(self) -> None:
        """Nothing: the group's model belongs to whoever made the group."""
        return None
