"""What josh's client makes once per message rather than once per request (`josh.llm.openai_compat.wire_memo`),
its call headers, and the system prompts agents resend as one object: the same bytes go out as before."""

from __future__ import annotations

import asyncio
import copy
import json
import pickle
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from josh.agents.function_calling import FunctionCallingAgent
from josh.agents.react import ReactAgent
from josh.llm.openai_compat.adaptations import sendable
from josh.llm.openai_compat.wire import call_headers, metadata_headers, session_headers, to_wire
from josh.llm.openai_compat.wire_memo import IdentityMemo, SharedWire, clean_json, request_json, shared_wire
from josh.types import (
    AssistantMessage,
    Message,
    SystemMessage,
    ToolCall,
    ToolMessage,
    UserMessage,
    system_message,
)
from josh.users.simulators import GoalUserSimulator

from .test_agent_turns import Executor, RecordingModel

TEXT = st.text(max_size=30)  # any code point, lone surrogates included
MESSAGES = st.one_of(
    st.builds(SystemMessage, content=TEXT),
    st.builds(UserMessage, content=TEXT),
    st.builds(ToolMessage, tool_call_id=TEXT, content=TEXT),
    st.builds(
        AssistantMessage,
        content=TEXT,
        tool_calls=st.lists(
            st.builds(
                ToolCall,
                id=TEXT,
                name=TEXT,
                arguments=st.dictionaries(TEXT, TEXT, max_size=2),
                raw_arguments=st.none() | TEXT,
            ),
            max_size=2,
        ).map(tuple),
    ),
)


@given(st.lists(MESSAGES, max_size=6), st.booleans())
def test_a_request_is_the_same_json_whether_its_messages_were_sent_before(
    messages: list[Message], again: bool
) -> None:
    """The body holds what the plain way sends (each message's wire dict, lone surrogates replaced), parses as
    UTF-8, and stays so when the messages' JSON comes from an earlier request."""
    body = {"model": "m", "temperature": 0.0, "messages": [shared_wire(m) for m in messages]}
    if again:
        request_json(body)
    sent = request_json(body)
    plain = {"model": "m", "temperature": 0.0, "messages": sendable([to_wire(m) for m in messages])}
    assert json.loads(sent.decode("utf-8")) == plain
    assert sent.decode("ascii")  # ASCII, as httpx sends it


def test_a_shared_wire_message_is_made_once_and_cannot_change() -> None:
    message = UserMessage(content="hello")
    wire = shared_wire(message)
    assert shared_wire(message) is wire and wire == to_wire(message)
    assert shared_wire(UserMessage(content="hello")) is not wire  # by identity, not by equality
    for change in (
        lambda: wire.__setitem__("content", "bye"),
        lambda: wire.update(content="bye"),
        lambda: wire.pop("content"),
        lambda: wire.clear(),
    ):
        with pytest.raises(TypeError, match="read-only"):
            change()
    for twin in (dict(wire), copy.deepcopy(wire), pickle.loads(pickle.dumps(wire))):
        assert type(twin) is dict and twin == wire
        twin["content"] = "bye"  # a copy is free to change
    assert wire["content"] == "hello" and json.loads(wire.json_text()) == to_wire(message)


def test_the_memo_keeps_the_newest_within_its_budget() -> None:
    made: list[object] = []

    def derive(obj: object) -> int:
        made.append(obj)
        return len(made)

    memo: IdentityMemo[object, int] = IdentityMemo(derive, budget=3)
    a, b, c, d = object(), object(), object(), object()
    assert [memo(a), memo(b), memo(a), memo(c)] == [1, 2, 1, 3]
    assert memo(d) == 4 and len(memo) == 3  # a, the oldest, made way
    assert memo(a) == 5 and memo(d) == 4
    heavy: IdentityMemo[str, str] = IdentityMemo(str.upper, budget=4, weigh=len)
    assert heavy("hello") == "HELLO" and len(heavy) == 0  # heavier than the whole budget: not kept


def test_a_long_run_keeps_only_the_newest_messages() -> None:
    """A run's messages are not all kept: the budget (about 32 MiB) holds some tens of thousands."""
    sent = [UserMessage(content=f"turn {i}") for i in range(40_000)]
    for message in sent:
        shared_wire(message).json_text()
    assert len(shared_wire) < 35_000
    assert shared_wire(sent[-1]) is shared_wire(sent[-1])


def test_clean_json_cleans_only_what_needs_it() -> None:
    assert clean_json({"a": "caf\ud800"}) == '{"a": "caf\\ufffd"}'
    assert clean_json({"a": "\U0001f600"}) == '{"a": "\\ud83d\\ude00"}'  # a pair is a character: kept
    assert clean_json({"a": "\\ud800"}) == '{"a": "\\\\ud800"}'  # the text of an escape is not one


def test_call_headers_are_the_metadata_and_session_headers() -> None:
    metadata = {"task_id": "MUL0003", "trial": "1", "role": "agent"}
    expected = {**metadata_headers(metadata), **session_headers(metadata)}
    first = call_headers(metadata)
    assert first == expected and call_headers(metadata) == expected
    first["X-Josh-Role"] = "changed"  # a caller's copy: what is remembered stays
    assert call_headers(metadata) == expected
    assert call_headers(None) == {}
    odd: Any = {"task_id": ["not", "hashable"]}
    assert call_headers(odd) == {**metadata_headers(odd), **session_headers(odd)}


def test_agents_and_customers_resend_one_system_message_object() -> None:
    """Every call of an agent, and of every agent with that prompt, sends the same `SystemMessage` object:
    the client encodes it once."""
    assert system_message("be brief") is system_message("be" + " brief")
    for agent_type, reply in ((ReactAgent, "SPEAK hi <COMMAND_END>"), (FunctionCallingAgent, "hi")):
        firsts = []
        for _ in range(2):
            model = RecordingModel(reply, reply)
            agent = agent_type(model=model, tools=[])
            for _ in range(2):
                asyncio.run(agent.step([UserMessage(content="hi")], Executor()))
            firsts += [messages[0] for messages, _ in model.requests]
        assert len(firsts) == 4 and all(first is firsts[0] for first in firsts)
    model = RecordingModel("a", "b")
    customer = GoalUserSimulator(model=model, goal_messages=["book a hotel"])
    for _ in range(2):
        asyncio.run(customer.step([AssistantMessage(content="hello")]))
    assert model.requests[0][0][0] is model.requests[1][0][0]


def test_a_model_sends_shared_messages_and_the_server_gets_them_whole() -> None:
    """Over josh's transport: the second request reuses the first's encoded system prompt, and the server
    reads both requests whole."""
    from josh.llm import OpenAIChatModel

    from .test_llm_transport import COMPLETION, response, serve

    data = json.dumps(COMPLETION).encode()

    async def run() -> list[dict[str, Any]]:
        async def handler(reader: Any, writer: asyncio.StreamWriter, state: dict[str, Any]) -> bool:
            writer.write(response(200, data, f"Content-Length: {len(data)}"))
            return True

        server, url, state = await serve(handler)
        prompt = system_message("a long prompt \ud800 " * 50)
        async with server, OpenAIChatModel("m", base_url=url) as model:
            for turn in ("a", "b"):
                await model.chat([prompt, UserMessage(content=turn)])
        assert isinstance(shared_wire(prompt), SharedWire) and shared_wire(prompt)._json is not None
        return [json.loads(raw.split(b"\r\n\r\n", 1)[1]) for raw in state["requests"]]

    first, second = asyncio.run(run())
    assert first["messages"][0] == second["messages"][0] == {
        "role": "system",
        "content": "a long prompt \ufffd " * 50,
    }
    assert [r["messages"][1]["content"] for r in (first, second)] == ["a", "b"]
