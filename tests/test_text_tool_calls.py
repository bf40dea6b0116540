"""Tool calls written as JSON text: noted by default (the paper speaks them), run with `parse_text_tool_calls`."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from josh.agents import FunctionCallingAgent
from josh.agents.base import AgentTurnError
from josh.agents.text_tool_calls import find_text_tool_calls
from josh.llm.scripted import ChatRequest, ScriptedChatModel
from josh.types import AssistantMessage, ToolMessage, UserMessage

TOOLS = [{"type": "function", "function": {"name": "search_hotel", "parameters": {"type": "object"}}}]
CALL = '{"name": "search_hotel", "arguments": {"area": "north"}}'


@pytest.mark.parametrize(
    "text",
    [
        CALL,
        f"  {CALL}\n",
        f"```json\n{CALL}\n```",
        f"```\n{CALL}\n```",
        f"<tool_call>\n{CALL}\n</tool_call>",
        f"<|python_tag|>{CALL}",
        f"[TOOL_CALLS][{CALL}]",
        '{"name": "search_hotel", "parameters": {"area": "north"}}',
        '{"name": "search_hotel", "arguments": "{\\"area\\": \\"north\\"}"}',  # arguments as a JSON string
        '{"type": "function", "function": {"name": "search_hotel", "arguments": {"area": "north"}}}',
        '{"type": "function", "name": "search_hotel", "parameters": {"area": "north"}}',
    ],
)
def test_found(text: str) -> None:
    [call] = find_text_tool_calls(text)
    assert (call.name, call.arguments) == ("search_hotel", {"area": "north"})
    assert call.raw_arguments == '{"area": "north"}'


def test_several_calls_in_order() -> None:
    second = '{"name": "book_hotel", "arguments": {"people": "2"}}'
    for text in (f"[{CALL}, {second}]", f"<tool_call>{CALL}</tool_call>\n<tool_call>{second}</tool_call>"):
        assert [c.name for c in find_text_tool_calls(text)] == ["search_hotel", "book_hotel"]


@pytest.mark.parametrize(
    "text",
    [
        "Sure! I found {2} hotels in the north.",  # speech with braces
        f"Let me search: {CALL}",  # a call inside speech is speech
        f"{CALL} I will get back to you.",
        '{"name": "Acorn Guest House", "area": "north", "stars": 4}',  # JSON about something else
        '{"hotel": {"name": "acorn"}}',
        '{"name": "search_hotel"}',  # no arguments
        '{"name": "search_hotel", "arguments": ["north"]}',  # arguments not an object
        '{"name": "search_hotel", "arguments": "north"}',
        '{"name": 3, "arguments": {}}',
        '{"name": "", "arguments": {}}',
        '{"name": "search_hotel", "arguments": {}, "parameters": {}}',  # both
        '{"name": "search_hotel", "arguments": {}, "reason": "the customer asked"}',
        '{"type": "text", "name": "search_hotel", "arguments": {}}',
        f"[{CALL}, 3]",  # a list with something else
        "[]",
        "{}",
        "",
        "```python\nprint(1)\n```",
        f"<tool_call>{CALL}</tool_call> and more",
        '{"name": "search_hotel", "arguments": {"area": "north"}',  # broken JSON
    ],
)
def test_not_a_tool_call(text: str) -> None:
    assert find_text_tool_calls(text) == []


def replies(*outputs: Any) -> tuple[ScriptedChatModel, list[ChatRequest]]:
    seen: list[ChatRequest] = []
    queue = list(outputs)

    def policy(request: ChatRequest) -> Any:
        seen.append(request)
        return queue.pop(0)

    return ScriptedChatModel(policy), seen


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, Any]] = []

    def __call__(self, name: Any, arguments: Any) -> Any:
        self.calls.append((name, arguments))
        return [{"name": "acorn guest house"}]


def test_by_default_the_text_is_spoken_with_a_note() -> None:
    model, _ = replies(f"```json\n{CALL}\n```")
    execute = Recorder()
    turn = asyncio.run(FunctionCallingAgent(model, TOOLS).step([UserMessage(content="hi")], execute))
    assert execute.calls == [] and turn.message.content == f"```json\n{CALL}\n```"
    assert turn.internal == [AssistantMessage(content=f"```json\n{CALL}\n```")]
    assert [n for n in turn.notes if n.startswith("tool call written as text")] == [
        "tool call written as text: search_hotel (spoken to the customer, as the paper does)"
    ]


def test_ordinary_speech_gets_no_note() -> None:
    model, _ = replies("I found {2} hotels.")
    turn = asyncio.run(FunctionCallingAgent(model, TOOLS).step([UserMessage(content="hi")], Recorder()))
    assert turn.notes == []


def test_parse_text_tool_calls_runs_the_first_like_a_native_call() -> None:
    second = '{"name": "book_hotel", "arguments": {"people": "2"}}'
    model, seen = replies(f"[{CALL}, {second}]", "Acorn guest house is free.")
    execute = Recorder()
    agent = FunctionCallingAgent(model, TOOLS, parse_text_tool_calls=True)
    turn = asyncio.run(agent.step([UserMessage(content="hi")], execute))
    assert execute.calls == [("search_hotel", {"area": "north"})]  # only the first, like the paper
    assert turn.message.content == "Acorn guest house is free."
    asked, answer, spoken = turn.internal
    assert isinstance(asked, AssistantMessage) and asked.content == ""
    [call] = asked.tool_calls
    assert (call.name, call.arguments, call.raw_arguments) == (
        "search_hotel",
        {"area": "north"},
        '{"area": "north"}',
    )
    assert isinstance(answer, ToolMessage) and answer.tool_call_id == call.id
    assert answer.content == '[{"name": "acorn guest house"}]'
    assert spoken == AssistantMessage(content="Acorn guest house is free.")
    assert seen[1].messages[-2:] == (asked, answer)  # the model sees it as its own tool call
    assert turn.notes[0] == "tool call written as text: search_hotel, book_hotel (run as a tool call)"
    assert turn.notes[1] == "1 extra tool calls ignored (the paper runs the first)"
    assert [c.call.name for c in turn.calls] == ["search_hotel"]


def test_parsed_text_calls_meet_the_strict_checks_of_native_ones() -> None:
    model, _ = replies('{"name": "get_train_times", "arguments": {}}')
    agent = FunctionCallingAgent(model, TOOLS, parse_text_tool_calls=True, strict_errors=True)
    with pytest.raises(AgentTurnError):
        asyncio.run(agent.step([UserMessage(content="hi")], Recorder()))
    model, _ = replies('{"name": "get_train_times", "arguments": {}}')
    agent = FunctionCallingAgent(model, TOOLS, strict_errors=True)  # spoken, as the paper: no crash
    turn = asyncio.run(agent.step([UserMessage(content="hi")], Recorder()))
    assert turn.message.content.startswith('{"name"')


def test_the_openai_wrapper_form_and_non_ascii_arguments() -> None:
    inner = {"name": "search_hotel", "arguments": {"area": "café"}}
    # every wrapper key allowed (function, type, id) with type "function": unwrapped
    [call] = find_text_tool_calls(json.dumps({"id": "c1", "type": "function", "function": inner}))
    assert (call.name, call.arguments) == ("search_hotel", {"area": "café"})
    assert call.raw_arguments == '{"area": "café"}'  # written as the model would, not \\u-escaped
    # no type is a function call too; a wrapper of another type is not one
    assert [c.name for c in find_text_tool_calls(json.dumps({"function": inner}))] == ["search_hotel"]
    assert find_text_tool_calls(json.dumps({"type": "retrieval", "function": inner})) == []
