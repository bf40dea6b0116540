"""The scripted mock answers `n` choices as independent samples, in-process and over HTTP."""

from __future__ import annotations

import asyncio

import pytest

from josh.agents import ReactAgent
from josh.envs.toolwoz import ToolWOZEnvironment
from josh.llm import OpenAIChatModel
from josh.mock import MockConfig, MockServer
from josh.mock.scripted_backend import scripted_model
from josh.types import AssistantMessage, Message, SystemMessage, Usage, UserMessage

pytestmark = pytest.mark.data

TASK = "MUL0001"  # first goal call: search_hotel
META = {"task_id": TASK, "trial": "0"}


def opening(env: ToolWOZEnvironment) -> list[Message]:
    agent = ReactAgent(model=None, tools=env.tool_schemas)  # type: ignore[arg-type]
    return [SystemMessage(content=agent.system_prompt), UserMessage(content="Hi! I need a hotel.")]


def wrong(reply: AssistantMessage) -> bool:
    assert "search_hotel" in reply.content
    return "wrong value" in reply.content


def test_each_choice_of_an_n_request_is_its_own_sample(toolwoz_env: ToolWOZEnvironment) -> None:
    model = scripted_model(toolwoz_env, MockConfig(mistake_rate=0.5))
    messages = opening(toolwoz_env)

    async def go() -> tuple[list[AssistantMessage], ...]:
        return (
            await model.chat(messages, n=8, seed=42, metadata=META),
            await model.chat(messages, n=8, seed=42, metadata=META),
            await model.chat(messages, seed=42, metadata=META),
        )

    eight, again, one = asyncio.run(go())
    assert len(eight) == 8 and model.calls == 3
    assert len({wrong(r) for r in eight}) == 2  # some choices made the mistake, some did not
    assert [r.content for r in again] == [r.content for r in eight]  # deterministic
    assert one[0].content == eight[0].content  # choice 0 is what n=1 gets
    # The request's usage is on its first choice only, as OpenAIChatModel reports it.
    assert eight[0].usage is not None and eight[0].usage.completion_tokens > 8
    assert all(r.usage == Usage() for r in eight[1:])


def test_calls_with_other_seeds_are_other_samples(toolwoz_env: ToolWOZEnvironment) -> None:
    model = scripted_model(toolwoz_env, MockConfig(mistake_rate=0.5))
    messages = opening(toolwoz_env)

    async def go() -> list[bool]:
        return [wrong((await model.chat(messages, seed=s, metadata=META))[0]) for s in range(42, 50)]

    assert len(set(asyncio.run(go()))) == 2


def test_the_http_mock_samples_n_choices_alike(toolwoz_env: ToolWOZEnvironment) -> None:
    messages = opening(toolwoz_env)
    in_process = scripted_model(toolwoz_env, MockConfig(mistake_rate=0.5))
    with MockServer(toolwoz_env, MockConfig(mistake_rate=0.5)) as server:
        client = OpenAIChatModel("josh-mock-agent", base_url=server.base_url, api_key=None, timeout=30)

        async def go() -> tuple[list[AssistantMessage], list[AssistantMessage]]:
            try:
                over_http = await client.chat(messages, n=8, seed=42, metadata=META)
            finally:
                await client.aclose()
            return over_http, await in_process.chat(messages, n=8, seed=42, metadata=META)

        over_http, local = asyncio.run(go())
    assert [r.content for r in over_http] == [r.content for r in local]


def test_the_mock_refuses_a_bad_n(toolwoz_env: ToolWOZEnvironment) -> None:
    from josh.mock.policies import MockRequestError, ScriptedToolWOZ

    policy = ScriptedToolWOZ(toolwoz_env)
    with pytest.raises(MockRequestError, match="'n' must be"):
        policy.complete({"messages": [{"role": "user", "content": "hi"}], "n": 0.5}, {})


def test_calls_with_other_prompts_are_other_samples(toolwoz_env: ToolWOZEnvironment) -> None:
    model = scripted_model(toolwoz_env, MockConfig(mistake_rate=0.5))
    system = opening(toolwoz_env)[0]

    async def go() -> list[bool]:
        return [
            wrong((await model.chat([system, UserMessage(content=f"Hi {i}!")], seed=42, metadata=META))[0])
            for i in range(8)
        ]

    assert len(set(asyncio.run(go()))) == 2
