"""Protocol errors where the reference crashes (its conversation scores 0), and turns that fail half-way.

With `strict_errors` the agent raises `AgentProtocolError` in every such case; without it, each is a note and
the conversation goes on. The crashing cases come from reading the reference (josh-train 0.1.4):
`FCAgentSimulator._step` indexes `tool_calls[0]` whenever `tool_calls` is not None and `json.loads` the
arguments; `handle_api_calls` splits the tool name into exactly two parts on "_" after running the call;
`ReACTAgentSimulator.handle_api` looks the APICALL name up in a dict and `validate_api_call` calls
`.keys()` on the parameters.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from josh.agents import AgentProtocolError, FunctionCallingAgent, ReactAgent
from josh.agents.base import AgentTurn, AgentTurnError
from josh.agents.prompts import BAD_APICALL
from josh.llm.base import RetryableLLMError
from josh.llm.scripted import ChatRequest, ScriptedChatModel
from josh.rollout import run_conversation
from josh.types import AssistantMessage, ToolCall, ToolMessage, Usage, UserMessage
from josh.users import GoalUserSimulator

TOOLS = [{"type": "function", "function": {"name": "search_hotel", "parameters": {"type": "object"}}}]
SPEAK = "PLAN reply <COMMAND_END> SPEAK sorry <COMMAND_END>"


def replies(*outputs: Any) -> ScriptedChatModel:
    queue = list(outputs)

    def policy(request: ChatRequest) -> Any:
        out = queue.pop(0)
        if isinstance(out, BaseException):
            raise out
        return out

    return ScriptedChatModel(policy)


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, Any]] = []

    def __call__(self, name: Any, arguments: Any) -> Any:
        self.calls.append((name, arguments))
        return "RESULT"


def run_turn(agent: Any, execute: Recorder) -> AgentTurn:
    return asyncio.run(agent.step([UserMessage(content="hi")], execute))


def strict_cause(agent: Any, execute: Recorder) -> BaseException:
    with pytest.raises(AgentTurnError) as info:
        run_turn(agent, execute)
    return info.value.cause


def fc(*outputs: Any, strict: bool) -> FunctionCallingAgent:
    return FunctionCallingAgent(replies(*outputs), TOOLS, strict_errors=strict)


def react(*outputs: Any, strict: bool) -> ReactAgent:
    return ReactAgent(replies(*outputs), TOOLS, strict_errors=strict)


# ------------------------------------------------------------------------------------ function calling


@pytest.mark.parametrize("raw", ["", "   "])
def test_fc_empty_arguments(raw: str) -> None:
    call = ToolCall(id="c", name="search_hotel", raw_arguments=raw)
    execute = Recorder()
    cause = strict_cause(fc(AssistantMessage(tool_calls=(call,)), strict=True), execute)
    assert isinstance(cause, AgentProtocolError) and "empty" in str(cause)
    assert execute.calls == []  # the reference's json.loads fails before the call runs

    execute = Recorder()
    turn = run_turn(
        fc(AssistantMessage(tool_calls=(call,)), AssistantMessage(content="ok"), strict=False), execute
    )
    assert execute.calls == [("search_hotel", {})] and turn.message.content == "ok"
    assert any("arguments are empty" in n and "reference crashes" in n for n in turn.notes)


@pytest.mark.parametrize("name", ["get_train_times", "search", "search_hotel_now", "search__hotel"])
def test_fc_names_that_do_not_split_in_two(name: str) -> None:
    call = ToolCall(id="c", name=name, arguments={"area": "north"}, raw_arguments='{"area": "north"}')
    cause = strict_cause(fc(AssistantMessage(tool_calls=(call,)), strict=True), Recorder())
    assert isinstance(cause, AgentProtocolError) and "split" in str(cause)

    execute = Recorder()
    turn = run_turn(
        fc(AssistantMessage(tool_calls=(call,)), AssistantMessage(content="ok"), strict=False), execute
    )
    assert execute.calls == [(name, {"area": "north"})]  # the environment answers with its error string
    assert [m.content for m in turn.internal if isinstance(m, ToolMessage)] == ['"RESULT"']
    assert any("does not split" in n for n in turn.notes)


@pytest.mark.parametrize("name", ["get_train", "search_hotels", "book_taxi", "_"])
def test_fc_unknown_names_in_two_parts_do_not_crash(name: str) -> None:
    call = ToolCall(id="c", name=name, arguments={}, raw_arguments="{}")
    execute = Recorder()
    turn = run_turn(
        fc(AssistantMessage(tool_calls=(call,)), AssistantMessage(content="ok"), strict=True), execute
    )
    assert execute.calls == [(name, {})] and turn.message.content == "ok" and turn.notes == []


def test_fc_empty_tool_call_list() -> None:
    empty = AssistantMessage(content="Let me check.", empty_tool_calls=True)
    cause = strict_cause(fc(empty, strict=True), Recorder())
    assert isinstance(cause, AgentProtocolError) and "empty tool_calls" in str(cause)

    turn = run_turn(fc(empty, strict=False), Recorder())
    assert turn.message.content == "Let me check." and any("empty tool_calls" in n for n in turn.notes)
    # no flag, no tool calls: ordinary speech, in both modes
    turn = run_turn(fc(AssistantMessage(content="Hello."), strict=True), Recorder())
    assert turn.message.content == "Hello." and turn.notes == []


@pytest.mark.parametrize("raw", ["[1, 2]", '"north"', "null", "3", "{not json"])
def test_fc_arguments_that_are_not_an_object(raw: str) -> None:
    call = ToolCall(id="c", name="search_hotel", raw_arguments=raw, parse_error="not an object")
    cause = strict_cause(fc(AssistantMessage(tool_calls=(call,)), strict=True), Recorder())
    assert isinstance(cause, AgentProtocolError)

    execute = Recorder()
    turn = run_turn(
        fc(AssistantMessage(tool_calls=(call,)), AssistantMessage(content="ok"), strict=False), execute
    )
    assert execute.calls == []
    [answer] = [m for m in turn.internal if isinstance(m, ToolMessage)]
    assert "NOT A VALID JSON OBJECT" in answer.content and turn.message.content == "ok"


def test_fc_strict_error_keeps_the_offending_reply_in_the_turn() -> None:
    call = ToolCall(id="c", name="search", arguments={}, raw_arguments="{}")
    with pytest.raises(AgentTurnError) as info:
        run_turn(fc(AssistantMessage(tool_calls=(call,)), strict=True), Recorder())
    assert info.value.turn.internal == [AssistantMessage(tool_calls=(call,))]
    assert info.value.turn.model_calls == 1


# ------------------------------------------------------------------------------------------------ ReAct


def apicall(payload: str) -> str:
    return f"PLAN look <COMMAND_END> APICALL {payload} <COMMAND_END>"


@pytest.mark.parametrize(
    "payload",
    ['{"name": ["search_hotel"], "parameters": {}}', '{"name": {"api": "search_hotel"}, "parameters": {}}'],
)
def test_react_name_that_cannot_be_looked_up(payload: str) -> None:
    cause = strict_cause(react(apicall(payload), strict=True), Recorder())
    assert isinstance(cause, AgentProtocolError) and "name" in str(cause)

    execute = Recorder()
    turn = run_turn(react(apicall(payload), SPEAK, strict=False), execute)
    assert execute.calls == [] and turn.internal[1].content == f'APIRETURN "{BAD_APICALL}"'


@pytest.mark.parametrize(
    ("parameters", "value"),
    [('["north"]', ["north"]), ('"north"', "north"), ("3", 3), ("null", None), ("true", True)],
)
def test_react_parameters_that_are_not_an_object(parameters: str, value: Any) -> None:
    payload = f'{{"name": "search_hotel", "parameters": {parameters}}}'
    execute = Recorder()
    with pytest.raises(AgentTurnError) as info:
        run_turn(react(apicall(payload), strict=True), execute)
    assert isinstance(info.value.cause, AgentProtocolError) and "parameters" in str(info.value.cause)
    assert execute.calls == []  # validate_api_call's .keys() fails before the call runs
    assert info.value.turn.internal == [
        AssistantMessage(content=f"PLAN look <COMMAND_END> APICALL {payload} <COMMAND_END>")
    ]

    execute = Recorder()
    turn = run_turn(react(apicall(payload), SPEAK, strict=False), execute)
    assert execute.calls == [("search_hotel", value)] and turn.message.content == "sorry"
    assert any("not an object" in n and "reference crashes" in n for n in turn.notes)


@pytest.mark.parametrize(
    "payload",
    [
        '{"name": 5, "parameters": {}}',  # hashable: simply not a tool
        '{"name": null, "parameters": {}}',
        '{"name": "search_hotel"}',  # no parameters: a KeyError the reference catches
        '{"name": "search_hotel", "parameters": {"area": "north"}',  # bad JSON, caught
        "search_hotel area=north",  # no JSON at all
        '{"name": "get_weather", "parameters": "x"}',  # unknown name: rejected before the parameters
    ],
)
def test_react_malformed_calls_the_reference_survives(payload: str) -> None:
    execute = Recorder()
    turn = run_turn(react(apicall(payload), SPEAK, strict=True), execute)
    assert execute.calls == [] and turn.message.content == "sorry"
    assert turn.internal[1].content == f'APIRETURN "{BAD_APICALL}"'


# ------------------------------------------------------------------------------- a turn that fails half-way


@pytest.mark.data
@pytest.mark.parametrize("strategy", ["fc", "react"])
def test_a_failed_model_call_keeps_the_turns_finished_work(toolwoz_env, strategy: str) -> None:
    """The 2nd model call of a turn fails: the 1st call's messages, tool call, usage and count are recorded."""
    arguments = {"time": "18:45", "day": "sunday", "people": "6", "name": "ask"}
    if strategy == "fc":
        first = AssistantMessage(tool_calls=(ToolCall(id="b", name="book_restaurant", arguments=arguments),))
        agent_cls: Any = FunctionCallingAgent
    else:
        first = AssistantMessage(
            content=apicall('{"name": "book_restaurant", "parameters": ' + json.dumps(arguments) + "}")
        )
        agent_cls = ReactAgent
    first = first.model_copy(update={"usage": Usage(prompt_tokens=4000, completion_tokens=30)})
    agent_model = replies(first, RetryableLLMError("HTTP 503 from the server"))
    user_model = replies(AssistantMessage(content="A table for 6, please.", usage=Usage(prompt_tokens=7)))
    task = toolwoz_env.task("MUL0003")
    record = asyncio.run(
        run_conversation(
            "MUL0003",
            [g.name for g in task.goal_calls],
            toolwoz_env.session("MUL0003"),
            agent_cls(agent_model, TOOLS),
            GoalUserSimulator(user_model, task.goal_messages),
        )
    )
    assert record.status == "error" and record.termination == "error" and record.reward is None
    assert record.error == "RetryableLLMError: HTTP 503 from the server"
    assert record.agent_model_calls == 1
    assert (record.agent_usage.prompt_tokens, record.agent_usage.completion_tokens) == (4000, 30)
    assert [c.name for c in record.calls] == ["book_restaurant"] and record.partial_reward == 0.25
    assert [m.role for m in record.internal] == ["user", "assistant", "tool" if strategy == "fc" else "user"]
    assert record.internal[0].content == "A table for 6, please."
    assert record.messages == [
        UserMessage(content="A table for 6, please.")
    ]  # nothing was said to the customer


class _PlainFailingAgent:
    """A third-party agent: no AgentTurnError, just an exception."""

    name = "plain"

    def __init__(self, exc: BaseException):
        self.exc = exc

    async def step(
        self, internal: Any, execute: Any, *, metadata: Any = None, result_text: Any = None
    ) -> AgentTurn:
        raise self.exc


@pytest.mark.data
def test_third_party_agents_raising_plain_exceptions(toolwoz_env) -> None:
    task = toolwoz_env.task("MUL0003")

    def run(exc: BaseException):
        return asyncio.run(
            run_conversation(
                "MUL0003",
                [g.name for g in task.goal_calls],
                toolwoz_env.session("MUL0003"),
                _PlainFailingAgent(exc),
                GoalUserSimulator(replies("Hello."), task.goal_messages),
            )
        )

    bug = run(ValueError("agent bug"))
    assert bug.status == "error" and bug.error.startswith("ValueError: agent bug\nTraceback")
    assert "raise self.exc" in bug.error  # the traceback points at the agent's own line
    protocol = run(AgentProtocolError("bad call"))
    assert (protocol.termination, protocol.reward, protocol.status) == ("agent_error", 0.0, "success")
    assert protocol.notes == ["turn 0: bad call (strict errors: the conversation ends with reward 0)"]
    llm = run(RetryableLLMError("timeout"))
    assert (llm.status, llm.error) == ("error", "RetryableLLMError: timeout")


def test_the_scripted_backend_reads_an_empty_tool_call_list_like_the_http_client() -> None:
    from josh.mock.scripted_backend import _message

    assert _message({"content": "x", "tool_calls": []}).empty_tool_calls is True
    assert _message({"content": "x", "tool_calls": None}).empty_tool_calls is False
    assert _message({"content": "x"}).empty_tool_calls is False
