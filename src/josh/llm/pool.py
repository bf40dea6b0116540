"""`EndpointPool`: one model served by several OpenAI-compatible servers (`--base-url` given several times).

Every call of one session (a JOSH tree, an eval conversation: the `task_id` and `trial` of its metadata) goes
to the same server while that server answers, so the siblings' long shared prefix hits its prefix cache; a new
session goes to the least loaded server (fewest requests in flight, then fewest sessions). Each server keeps
its own circuit breaker (`josh.llm.breaker`): when one opens, the pool's requests on that server stop waiting
for it (`OpenAIChatModel.failover`) and go to a live one, and its sessions move with them. Only when every
server is unavailable do requests wait for the first to come back, and only when every one is declared down
(past `--max-outage`) does a request raise `EndpointDownError`, which stops the run.

For a fleet larger than a few servers, put a router in front instead (vllm-router, SGLang's router) and give
josh its one URL: the same session key is sent on every request for it to hash on (`josh.llm.openai_compat.wire.session_headers`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence
from typing import Any

from josh.llm.base import EndpointDownError, EndpointOutageError
from josh.llm.context import ContextWindow, PromptSize
from josh.llm.openai_compat import OpenAIChatModel
from josh.llm.openai_compat.wire import session_key
from josh.types import AssistantMessage, Message

log = logging.getLogger(__name__)


class EndpointPool:
    """A `ChatModel` over several servers of one model; see the module's docstring.

    Args:
        members: one `OpenAIChatModel` per server, same model name, each with its own breaker (or None).

    `calls` counts the calls each server answered (by base URL), `moved` the sessions moved off a server
    that stopped answering.
    """

    def __init__(self, members: Sequence[OpenAIChatModel]) -> None:
        if len(members) < 2:
            raise ValueError("a pool needs at least two endpoints")
        names = {member.name for member in members}
        if len(names) != 1:
            raise ValueError(f"the endpoints of a pool serve one model, got {sorted(names)}")
        self.members = list(members)
        self.name = members[0].name
        for member in self.members:
            member.failover = True
        self._sessions: dict[str, int] = {}
        self._session_count = [0] * len(members)
        self._in_flight = [0] * len(members)
        self.calls: dict[str, int] = {member.base_url: 0 for member in members}
        self.moved = 0

    def __repr__(self) -> str:
        return f"EndpointPool(model={self.name!r}, base_urls={self.base_urls!r})"

    @property
    def base_urls(self) -> list[str]:
        return [member.base_url for member in self.members]

    @property
    def base_url(self) -> str:
        """The servers, for messages that name where a model is."""
        return " + ".join(self.base_urls)

    @property
    def adaptations(self) -> list[str]:
        """What each server's model adapted (see `OpenAIChatModel.adaptations`), once per distinct line."""
        return list(dict.fromkeys(line for member in self.members for line in member.adaptations))

    async def chat(
        self,
        messages: Sequence[Message],
        *,
        metadata: Mapping[str, str] | None = None,
        **options: Any,
    ) -> list[AssistantMessage]:
        """`ChatModel.chat` on the session's server (or the least loaded); on another when it fails over."""
        key = session_key(metadata)
        while True:
            index = self._choose(key)
            if index is None:
                await self._wait_for_a_server()
                continue
            self._in_flight[index] += 1
            try:
                replies = await self.members[index].chat(messages, metadata=metadata, **options)
            except EndpointOutageError:
                continue  # its breaker is open now: `_choose` passes it over
            finally:
                self._in_flight[index] -= 1
            self.calls[self.members[index].base_url] += 1
            return replies

    def _available(self) -> list[int]:
        return [
            index
            for index, member in enumerate(self.members)
            if member.breaker is None or member.breaker.state == "closed"
        ]

    def _choose(self, key: str | None) -> int | None:
        """The session's server while it is available, else the least loaded available one (None: none)."""
        available = self._available()
        if not available:
            return None
        current = self._sessions.get(key) if key is not None else None
        if current is not None and current in available:
            return current
        best = min(available, key=lambda i: (self._in_flight[i], self._session_count[i], i))
        if key is not None:
            if current is not None:
                self._session_count[current] -= 1
                self.moved += 1
                log.info(
                    "session %s moved from %s to %s",
                    key,
                    self.members[current].base_url,
                    self.members[best].base_url,
                )
            self._sessions[key] = best
            self._session_count[best] += 1
        return best

    async def _wait_for_a_server(self) -> None:
        """Every server is unavailable: wait until one comes back (return) or all are down (raise)."""
        breakers = [m.breaker for m in self.members if m.breaker is not None and m.breaker.state == "open"]
        if not breakers:
            reasons = "; ".join(
                m.breaker.down_message or m.base_url for m in self.members if m.breaker is not None
            )
            raise EndpointDownError(f"all {len(self.members)} endpoints of {self.name} are down: {reasons}")
        waits = [asyncio.ensure_future(breaker.wait_ready()) for breaker in breakers]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for wait in waits:
                wait.cancel()
                with contextlib.suppress(asyncio.CancelledError, EndpointDownError):
                    await wait

    async def check(self) -> None:
        """Preflight every server (`OpenAIChatModel.check`); the first failure names its server."""
        for member in self.members:
            await member.check()

    async def context_window(self) -> ContextWindow | None:
        """The smallest context any server gives the model (they may be started differently)."""
        windows = [await member.context_window() for member in self.members]
        known = [window for window in windows if window is not None]
        return min(known, key=lambda window: window.tokens) if known else None

    async def prompt_size(
        self, messages: Sequence[Message], tools: Sequence[Mapping[str, Any]] | None = None
    ) -> PromptSize | None:
        return await self.members[0].prompt_size(messages, tools)

    async def aclose(self) -> None:
        for member in self.members:
            await member.aclose()
