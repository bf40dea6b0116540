"""n-sampling for siblings: identical first requests of sibling branches become one call with `n`."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest

from josh.llm import CallLedger, RetryableLLMError, SiblingGroup
from josh.types import AssistantMessage, Message, Usage, UserMessage


@dataclass
class Recorder:
    """A chat model that records each call's `n`, seed and last message; its k-th choice for a prompt says
    "<prompt> #k"."""

    name: str = "recorder"
    most_choices: int = 100  # a backend that ignores n returns fewer
    fail: BaseException | None = None
    calls: list[tuple[int, int | None, str]] = field(default_factory=list)

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
        last = messages[-1].content
        done = sum(min(c[0], self.most_choices) for c in self.calls if c[2] == last)  # choices so far
        self.calls.append((n, seed, last))
        await asyncio.sleep(0)
        if self.fail is not None:
            raise self.fail
        return [
            AssistantMessage(
                content=f"{last} #{done + i}",
                # as OpenAIChatModel does: the request's usage on the first choice, zero on the others
                usage=Usage(prompt_tokens=100, completion_tokens=10 * n) if i == 0 else Usage(),
            )
            for i in range(min(n, self.most_choices))
        ]

    async def aclose(self) -> None:
        return None


def ask(text: str) -> list[Message]:
    return [UserMessage(content=text)]


async def first_replies(group: SiblingGroup, prompts: list[str | None]) -> list[str | None]:
    """Each member's first call (None: the member makes none and is released), all at once."""

    async def one(index: int, prompt: str | None) -> str | None:
        member = group.members[index]
        if prompt is None:
            await asyncio.sleep(0)
            member.release()
            return None
        [reply] = await member.chat(ask(prompt), temperature=1.0, seed=42)
        member.release()
        return reply.content

    return list(await asyncio.gather(*(one(i, p) for i, p in enumerate(prompts))))


def test_identical_first_requests_are_one_call_with_n() -> None:
    model = Recorder()
    group = SiblingGroup(model, 2)
    assert asyncio.run(first_replies(group, ["hi", "hi"])) == ["hi #0", "hi #1"]
    assert model.calls == [(2, 42, "hi")]


def test_a_sibling_whose_first_request_differs_makes_its_own_call() -> None:
    model = Recorder()
    group = SiblingGroup(model, 3)
    assert asyncio.run(first_replies(group, ["hi", "bye", "hi"])) == ["hi #0", "bye #0", "hi #1"]
    assert sorted(model.calls) == [(1, 42, "bye"), (2, 42, "hi")]


def test_a_released_sibling_is_not_waited_for() -> None:
    model = Recorder()
    group = SiblingGroup(model, 2)
    assert asyncio.run(first_replies(group, ["hi", None])) == ["hi #0", None]
    assert model.calls == [(1, 42, "hi")]


def test_later_calls_go_straight_to_the_model() -> None:
    model = Recorder()
    group = SiblingGroup(model, 2)

    async def go() -> None:
        await first_replies(group, ["hi", "hi"])
        await group.members[0].chat(ask("again"), seed=42)  # would wait forever for member 1 if grouped

    asyncio.run(asyncio.wait_for(go(), timeout=5))
    assert model.calls == [(2, 42, "hi"), (1, 42, "again")]


def test_a_backend_that_returns_fewer_choices_is_asked_again() -> None:
    model = Recorder(most_choices=1)  # llama.cpp ignores n
    group = SiblingGroup(model, 3)
    assert asyncio.run(first_replies(group, ["hi", "hi", "hi"])) == ["hi #0", "hi #1", "hi #2"]
    assert model.calls == [(3, 42, "hi"), (2, 42, "hi"), (1, 42, "hi")]


def test_the_ledger_counts_one_call_with_its_n() -> None:
    ledger = CallLedger()
    group = SiblingGroup(ledger.wrap(Recorder(), "agent"), 2)
    asyncio.run(first_replies(group, ["hi", "hi"]))
    [call] = ledger.calls
    assert (call.role, call.n, call.prompt_tokens, call.completion_tokens) == ("agent", 2, 100, 20)


def test_without_n_each_sibling_sends_its_own_seed() -> None:
    model = Recorder()
    group = SiblingGroup(model, 2, use_n=False, seed_shifts=[1, 2])
    asyncio.run(first_replies(group, ["hi", "hi"]))
    assert sorted(model.calls) == [(1, 43, "hi"), (1, 44, "hi")]


def test_a_failed_shared_call_fails_every_sibling_in_it() -> None:
    model = Recorder(fail=RetryableLLMError("gave up"))
    group = SiblingGroup(model, 2)

    async def go() -> list[Any]:
        return await asyncio.gather(
            *(m.chat(ask("hi"), seed=42) for m in group.members), return_exceptions=True
        )

    results = asyncio.run(go())
    assert all(isinstance(r, RetryableLLMError) for r in results) and len(model.calls) == 1


def test_a_sibling_cancelled_while_waiting_is_not_waited_for() -> None:
    model = Recorder()
    group = SiblingGroup(model, 3)

    async def go() -> str:
        waiting = asyncio.ensure_future(group.members[0].chat(ask("hi"), seed=42))
        await asyncio.sleep(0)
        waiting.cancel()
        await asyncio.sleep(0)  # the cancellation reaches the waiting call
        group.members[2].release()
        [reply] = await group.members[1].chat(ask("hi"), seed=42)
        return reply.content

    assert asyncio.run(asyncio.wait_for(go(), timeout=5)) == "hi #0"
    assert model.calls == [(1, 42, "hi")]


def test_a_group_needs_one_shift_per_member() -> None:
    with pytest.raises(ValueError, match="2 members need 2 seed shifts"):
        SiblingGroup(Recorder(), 2, seed_shifts=[1])
