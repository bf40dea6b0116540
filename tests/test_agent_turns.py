"""What one agent turn records: the calls it ran, its notes, the reference's crash messages, and what it
sends the model. Expected values are written out by hand from the agents' rules."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import pytest

from josh.agents import AgentProtocolError, FunctionCallingAgent, ReactAgent
from josh.agents.base import AgentTurnError, ExecutedCall
from josh.agents.function_calling import arguments_error, reference_crash
from josh.agents.prompts import BAD_APICALL, NO_COMMAND, OUT_OF_RETRIES
from josh.agents.react import parse_apicall
from josh.types import AssistantMessage, Message, ToolCall, Usage, UserMessage

TOOLS = [{"type": "function", "function": {"name": "search_hotel", "parameters": {"type": "object"}}}]


class RecordingModel:
    """Answers from a list of replies (a string is a text reply); keeps every call's keyword arguments."""

    name = "recorder"

    def __init__(self, *replies: AssistantMessage | str | BaseException) -> None:
        self.replies = list(replies)
        self.requests: list[tuple[list[Message], dict[str, Any]]] = []

    async def chat(self, messages: Sequence[Message], **options: Any) -> list[AssistantMessage]:
        self.requests.append((list(messages), options))
        reply = self.replies.pop(0)
        if isinstance(reply, BaseException):
            raise reply
        if isinstance(reply, str):
            reply = AssistantMessage(content=reply, usage=Usage(prompt_tokens=10, completion_tokens=2))
        return [reply]


class Executor:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, Any]] = []

    def __call__(self, name: Any, arguments: Any) -> Any:
        self.calls.append((name, arguments))
        return [{"n": len(self.calls)}]


def run_turn(agent: Any, execute: Executor | None = None, **kwargs: Any) -> Any:
    return asyncio.run(agent.step([UserMessage(content="hi")], execute or Executor(), **kwargs))


def apicall(parameters: str, name: str = '"search_hotel"') -> str:
    return f'APICALL {{"name": {name}, "parameters": {parameters}}} <COMMAND_END>'


# -- ReAct ------------------------------------------------------------------------------------------------


def test_react_turn_records_each_call_and_what_it_sent() -> None:
    model = RecordingModel(apicall('{"area": "north"}'), apicall("[1, 2]"), "SPEAK done <COMMAND_END>")
    execute = Executor()
    agent = ReactAgent(model, TOOLS, temperature=0.3, max_tokens=99, seed=7)
    turn = run_turn(agent, execute, metadata={"task_id": "T1"})
    # Both calls ran (lenient: non-object parameters are passed on, as the reference would before crashing).
    assert execute.calls == [("search_hotel", {"area": "north"}), ("search_hotel", [1, 2])]
    assert turn.calls == [
        ExecutedCall(ToolCall(id="call_0", name="search_hotel", arguments={"area": "north"}), [{"n": 1}]),
        ExecutedCall(
            ToolCall(id="call_1", name="search_hotel", arguments={}, parse_error="parameters is not a JSON object"),
            [{"n": 2}],
        ),
    ]  # fmt: skip
    assert turn.notes == ["APICALL parameters is an array, not an object (the reference crashes here)"]
    # 3 model calls of 10 + 2 tokens each; the reply carries the turn's usage and the model's name.
    assert turn.model_calls == 3 and turn.usage == Usage(prompt_tokens=30, completion_tokens=6)
    assert turn.message == AssistantMessage(
        content="done", usage=Usage(prompt_tokens=30, completion_tokens=6), model="recorder"
    )
    options = {"tools": None, "temperature": 0.3, "max_tokens": 99, "seed": 7, "metadata": {"task_id": "T1"}}
    assert [o for _, o in model.requests] == [options] * 3


@pytest.mark.parametrize(
    ("parameters", "kind"),
    [("[1]", "an array"), ('"x"', "a string"), ("true", "a boolean"), ("3", "a number"), ("2.5", "a number"),
     ("null", "null")],
)  # fmt: skip
def test_react_strict_names_the_json_type_of_odd_parameters(parameters: str, kind: str) -> None:
    agent = ReactAgent(RecordingModel(apicall(parameters)), TOOLS, strict_errors=True)
    with pytest.raises(AgentTurnError) as info:
        run_turn(agent)
    assert isinstance(info.value.cause, AgentProtocolError)
    assert str(info.value.cause) == f"APICALL parameters is {kind}, not an object"


def test_react_strict_names_the_json_type_of_an_odd_name() -> None:
    with pytest.raises(AgentProtocolError, match="^APICALL name is an array, not a string$"):
        parse_apicall('{"name": ["search_hotel"], "parameters": {}}', strict=True)
    with pytest.raises(AgentProtocolError, match="^APICALL name is dict, not a string$"):
        parse_apicall('{"name": {"a": 1}, "parameters": {}}', strict=True)
    # Not strict by default: the same APICALL is just malformed.
    assert parse_apicall('{"name": ["search_hotel"], "parameters": {}}') is None


def test_react_notes_say_what_went_wrong() -> None:
    broken = "APICALL {broken" + "x" * 300 + " <COMMAND_END>"
    model = RecordingModel("Hello there.", broken, "PLAN still thinking <COMMAND_END>")
    turn = run_turn(ReactAgent(model, TOOLS))
    # the cleaned command: everything after "APICALL", stripped, cut to 200 characters in the note
    assert turn.notes == [
        "no command in the model output",
        "malformed APICALL: " + ("{broken" + "x" * 300)[:200],
        "ran out of model calls without SPEAK",
    ]
    assert [m.content for m in turn.internal] == [NO_COMMAND, f"APICALL {{broken{'x' * 300} <COMMAND_END>",
                                                  "APIRETURN " + json.dumps(BAD_APICALL)]  # fmt: skip
    assert turn.message.content == OUT_OF_RETRIES and turn.calls == []


def test_a_failed_turn_says_why_and_keeps_the_cause() -> None:
    cause = RuntimeError("boom")
    agent = ReactAgent(RecordingModel(apicall('{"area": "east"}'), cause), TOOLS)
    with pytest.raises(AgentTurnError) as info:
        run_turn(agent)
    assert str(info.value) == "RuntimeError: boom"
    assert info.value.cause is cause and info.value.__cause__ is cause
    assert info.value.turn.model_calls == 1 and len(info.value.turn.calls) == 1  # the finished part stays


# -- function calling -------------------------------------------------------------------------------------


def call(arguments: str | None, name: str = "search_hotel", call_id: str = "c1", error: str | None = None):
    parsed = json.loads(arguments) if arguments and arguments.strip() and error is None else {}
    return ToolCall(id=call_id, name=name, arguments=parsed, raw_arguments=arguments, parse_error=error)


def test_arguments_error_and_the_references_crashes_word_for_word() -> None:
    assert arguments_error('{"a": ', "bad JSON") == (
        'ERROR: INVALID API CALL! THE ARGUMENTS ARE NOT A VALID JSON OBJECT (bad JSON): {"a": '
    )
    assert arguments_error(None, "empty").endswith("(empty): ")
    assert arguments_error("y" * 300, "long").endswith("(long): " + "y" * 200)
    assert reference_crash(AssistantMessage(content="hi")) is None
    assert (
        reference_crash(AssistantMessage(empty_tool_calls=True)) == "the reply has an empty tool_calls list"
    )
    empty = AssistantMessage(tool_calls=(call("  "),))
    assert reference_crash(empty) == "the tool-call arguments are empty (not JSON)"
    bad = AssistantMessage(tool_calls=(call('{"a": ', error="not JSON"),))
    assert reference_crash(bad) == "tool-call arguments: not JSON"
    three = AssistantMessage(tool_calls=(call("{}", name="get_train_times"),))
    assert reference_crash(three) == "the tool name 'get_train_times' does not split into two parts on '_'"
    long_name = AssistantMessage(tool_calls=(call("{}", name="x" * 150),))
    assert reference_crash(long_name) == f"the tool name {'x' * 100!r} does not split into two parts on '_'"
    assert reference_crash(AssistantMessage(tool_calls=(call("{}"),))) is None


def test_fc_turn_answers_a_malformed_call_and_runs_a_good_one() -> None:
    first = AssistantMessage(tool_calls=(call('{"area": ', error="not JSON"),), usage=Usage(prompt_tokens=5))
    second = AssistantMessage(
        tool_calls=(call('{"area": "north"}', call_id="c2"), call("{}", call_id="c3")),
        usage=Usage(prompt_tokens=7),
    )
    model = RecordingModel(first, second, "Found one.")
    execute = Executor()
    agent = FunctionCallingAgent(model, TOOLS, max_tokens=64, seed=5)
    turn = run_turn(agent, execute, metadata={"role": "agent"})
    assert execute.calls == [("search_hotel", {"area": "north"})]  # the malformed call never runs
    assert turn.calls == [ExecutedCall(second.tool_calls[0], [{"n": 1}])]
    assert turn.notes == [
        "malformed tool-call arguments: not JSON",
        "1 extra tool calls ignored (the paper runs the first)",
    ]
    error_text = json.dumps(arguments_error('{"area": ', "not JSON"))
    assert [(m.role, getattr(m, "name", None), m.content) for m in turn.internal] == [
        ("assistant", None, ""), ("tool", "search_hotel", error_text),
        ("assistant", None, ""), ("tool", "search_hotel", json.dumps([{"n": 1}])),
        ("assistant", None, "Found one."),
    ]  # fmt: skip
    assert [m.tool_calls for m in turn.internal[::2][:2]] == [first.tool_calls, second.tool_calls[:1]]
    # The third request saw both exchanges: system, the customer, then 4 messages of this turn.
    assert len(model.requests[2][0]) == 6 and model.requests[2][0][-1].content == json.dumps([{"n": 1}])
    assert all(o["tools"] == TOOLS and o["max_tokens"] == 64 and o["seed"] == 5 for _, o in model.requests)
    assert all(o["metadata"] == {"role": "agent"} for _, o in model.requests)
    assert turn.message.content == "Found one." and turn.usage.prompt_tokens == 5 + 7 + 10


def test_fc_turn_out_of_calls_and_a_strict_crash() -> None:
    calls = [AssistantMessage(tool_calls=(call("{}", call_id=f"c{i}"),)) for i in range(3)]
    turn = run_turn(FunctionCallingAgent(RecordingModel(*calls), TOOLS))
    assert turn.notes == ["ran out of model calls without a reply"] and len(turn.calls) == 3
    assert turn.internal[-1] == AssistantMessage(content=OUT_OF_RETRIES)
    assert turn.message.content == OUT_OF_RETRIES
    two_bad = AssistantMessage(
        content="let me see", tool_calls=(call("", call_id="a"), call("{}", call_id="b"))
    )
    with pytest.raises(AgentTurnError) as info:
        run_turn(FunctionCallingAgent(RecordingModel(two_bad), TOOLS, strict_errors=True))
    assert str(info.value.cause) == "the tool-call arguments are empty (not JSON)"
    # the record keeps the crashing reply's text and its first tool call only
    assert info.value.turn.internal == [
        AssistantMessage(content="let me see", tool_calls=two_bad.tool_calls[:1])
    ]


def test_fc_text_tool_calls_are_named_in_the_note() -> None:
    names = ["search_hotel", "book_hotel", "search_train", "book_train", "search_taxi", "book_taxi"]
    text = json.dumps([{"name": n, "arguments": {}} for n in names])
    spoken = run_turn(FunctionCallingAgent(RecordingModel(text), TOOLS))
    # six calls: the first five named, then "..."
    assert spoken.notes == [
        "tool call written as text: search_hotel, book_hotel, search_train, book_train, search_taxi, ... "
        "(spoken to the customer, as the paper does)"
    ]
    five = json.dumps([{"name": n, "arguments": {}} for n in names[:5]])
    assert (
        run_turn(FunctionCallingAgent(RecordingModel(five), TOOLS))
        .notes[0]
        .endswith("search_taxi (spoken to the customer, as the paper does)")
    )
    long = json.dumps([{"name": "x" * 150, "arguments": {}}])
    assert run_turn(FunctionCallingAgent(RecordingModel(long), TOOLS)).notes[0] == (
        f"tool call written as text: {'x' * 100} (spoken to the customer, as the paper does)"
    )  # a name is cut to 100 characters in the note
    execute = Executor()
    ran = run_turn(
        FunctionCallingAgent(RecordingModel(five, "ok"), TOOLS, parse_text_tool_calls=True), execute
    )
    assert execute.calls == [("search_hotel", {})]
    assert ran.calls[0].call.id == "text_call_0_0" and ran.internal[0].content == ""
