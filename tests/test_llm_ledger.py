"""The call ledger: one ModelCall per chat() call, whatever came of it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from josh.llm import CallLedger, ChatModel, FatalLLMError, ResponseCache, ScriptedChatModel
from josh.llm.scripted import ChatRequest
from josh.types import AssistantMessage, ModelCall, Usage, UserMessage
from tests.test_llm_openai import FakeOpenAI, make_model, text

HI = [UserMessage(content="hi")]


def test_successes_and_failures_are_both_recorded() -> None:
    replies = iter(
        [
            AssistantMessage(content="a", usage=Usage(prompt_tokens=4000, completion_tokens=50, cost=0.01)),
            AssistantMessage(content="b", usage=Usage(prompt_tokens=4100, completion_tokens=60, cost=0.02)),
        ]
    )

    def policy(request: ChatRequest) -> AssistantMessage:
        reply = next(replies, None)
        if reply is None:
            raise FatalLLMError("the endpoint refused the request (HTTP 400:\nbad\nthing)")
        return reply

    ledger = CallLedger()
    agent = ledger.wrap(ScriptedChatModel(policy, name="agent-model"), "agent")
    assert isinstance(agent, ChatModel) and agent.name == "agent-model"

    async def run() -> None:
        await agent.chat(HI)
        await agent.chat(HI)
        with pytest.raises(FatalLLMError, match="HTTP 400") as info:
            await agent.chat(HI, n=2)
        assert str(info.value) == "the endpoint refused the request (HTTP 400:\nbad\nthing)"  # unchanged
        await agent.aclose()

    asyncio.run(run())
    first, second, failed = ledger.calls
    assert (first.role, first.n, first.prompt_tokens, first.completion_tokens) == ("agent", 1, 4000, 50)
    assert first.cost == pytest.approx(0.01) and not first.cached and first.error is None
    assert (second.prompt_tokens, second.completion_tokens) == (4100, 60)
    assert failed.n == 2 and failed.prompt_tokens == 0 and failed.completion_tokens == 0
    assert failed.error == "FatalLLMError: the endpoint refused the request (HTTP 400: bad thing)"
    assert all(call.latency_s is not None and call.latency_s >= 0 for call in ledger.calls)
    total = ledger.usage("agent")
    assert (total.prompt_tokens, total.completion_tokens) == (8100, 110)
    assert total.cost == pytest.approx(0.03)
    assert ledger.count("agent") == 3 and ledger.count(failed=True) == 1 and ledger.count("user") == 0


def test_roles_are_kept_apart_and_unpriced_calls_stay_unpriced() -> None:
    ledger = CallLedger()
    priced = ledger.wrap(ScriptedChatModel(lambda r: "x"), "agent")  # scripted: free
    unpriced = ledger.wrap(
        ScriptedChatModel(lambda r: AssistantMessage(content="y", usage=Usage(prompt_tokens=7, cost=None))),
        "user",
    )

    async def run() -> None:
        await priced.chat(HI)
        await unpriced.chat(HI)

    asyncio.run(run())
    assert [call.role for call in ledger.calls] == ["agent", "user"]
    assert ledger.calls[0].cost == 0.0 and ledger.calls[1].cost is None
    assert ledger.usage("agent").cost == 0.0
    assert ledger.usage("user").cost is None and ledger.usage().cost is None


def test_n_replies_are_summed_and_cache_hits_marked(tmp_path: Path) -> None:
    fake = FakeOpenAI()
    fake.queue(text("a", usage=(30, 8)))
    ledger = CallLedger()
    try:
        with ResponseCache(tmp_path / "c.sqlite") as cache:

            async def run() -> list[Any]:
                async with make_model(fake.base_url, cache=cache) as model:
                    wrapped = ledger.wrap(model, "user")
                    await wrapped.chat(HI, n=2, temperature=1.0)
                    await wrapped.chat(HI, n=2, temperature=1.0)  # served from the cache
                    return [wrapped.adaptations, wrapped.trailing_assistant]  # forwarded attributes

            forwarded = asyncio.run(run())
    finally:
        fake.close()
    fresh, hit = ledger.calls
    assert (fresh.n, fresh.prompt_tokens, fresh.completion_tokens, fresh.cached) == (2, 30, 8, False)
    assert fresh.cost == pytest.approx((30 * 0.15 + 8 * 0.60) / 1e6)
    assert (hit.prompt_tokens, hit.completion_tokens, hit.cost, hit.cached) == (30, 8, 0.0, True)
    assert forwarded == [[], "keep"]
    assert ModelCall.model_validate(hit.model_dump(mode="json")) == hit


@given(
    st.lists(
        st.one_of(
            st.none(),
            st.builds(
                Usage,
                prompt_tokens=st.integers(0, 10_000),
                completion_tokens=st.integers(0, 10_000),
                cost=st.one_of(st.none(), st.floats(0, 1, allow_nan=False)),
            ),
        ),
        min_size=1,
        max_size=4,
    ),
    st.lists(st.sampled_from(["agent", "user"]), min_size=1, max_size=4),
)
def test_the_sums_are_what_adding_usages_gives(usages: list[Usage | None], roles: list[str]) -> None:
    """The ledger sums tokens and costs with plain numbers; the result must be `Usage.__add__`'s, an unpriced
    reply (cost None) making the sum unpriced, a reply without usage counting nothing."""
    replies = [AssistantMessage(content="x", usage=u) for u in usages]

    class Fixed:  # the replies as they are, usage or none
        name = "fixed"

        async def chat(self, messages: Any, **options: Any) -> list[AssistantMessage]:
            return list(replies)

        async def aclose(self) -> None:
            return None

    ledger = CallLedger()
    for role in roles:
        asyncio.run(ledger.wrap(Fixed(), role).chat(HI, n=len(replies)))  # type: ignore[arg-type]
    one = Usage()
    for usage in usages:
        one += usage or Usage()
    [call, *_] = ledger.calls
    assert (call.prompt_tokens, call.completion_tokens, call.cost) == (
        one.prompt_tokens, one.completion_tokens, one.cost
    )
    for role in ("agent", "user", None):
        times = sum(1 for r in roles if role is None or r == role)
        total = Usage()
        for _ in range(times):
            total += one
        assert ledger.usage(role) == total
