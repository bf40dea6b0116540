"""Agents and user simulators against scripted models: the paper's protocol, turn by turn."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from josh.agents import AgentProtocolError, FunctionCallingAgent, ReactAgent
from josh.agents.base import AgentTurnError
from josh.agents.prompts import BAD_APICALL, NO_COMMAND, OUT_OF_RETRIES, REACT_MARKER
from josh.agents.react import parse_apicall, parse_commands
from josh.llm.scripted import ChatRequest, ScriptedChatModel
from josh.types import AssistantMessage, SystemMessage, ToolCall, ToolMessage, UserMessage
from josh.users import GoalUserSimulator, GuideUserSimulator, ReplayUserSimulator
from josh.users.prompts import GUIDE_MARKER, USER_MARKER
from josh.users.simulators import transcript

TOOLS = [{"type": "function", "function": {"name": "search_hotel", "parameters": {"type": "object"}}}]


def replies(*outputs: Any) -> tuple[ScriptedChatModel, list[ChatRequest]]:
    seen: list[ChatRequest] = []
    queue = list(outputs)

    def policy(request: ChatRequest) -> Any:
        seen.append(request)
        return queue.pop(0)

    return ScriptedChatModel(policy), seen


def turn_error(agent: Any, execute: Any) -> AgentTurnError:
    """The `AgentTurnError` one turn of `agent` (the customer said "hi") raises; fails when none is raised."""
    try:
        asyncio.run(agent.step([UserMessage(content="hi")], execute))
    except AgentTurnError as exc:
        return exc
    raise AssertionError("the turn did not fail")


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def __call__(self, name: str, arguments: Any) -> Any:
        self.calls.append((name, arguments))
        return [{"name": "acorn guest house"}]


def test_react_command_parsing() -> None:
    out = 'PLAN look it up <COMMAND_END>\nAPICALL {"name": "search_hotel", "parameters": {"area": "north"}} <COMMAND_END>'
    assert parse_commands(out) == [
        ("PLAN", "look it up"),
        ("APICALL", '{"name": "search_hotel", "parameters": {"area": "north"}}'),
    ]
    assert parse_apicall('{"name": "search_hotel", "parameters": {"area": "north"}}') == (
        "search_hotel",
        {"area": "north"},
    )
    assert parse_apicall('{"name": "get_weather", "parameters": {}}') is None
    assert parse_apicall('{"name": "search_hotel"}') is None
    assert parse_apicall("{broken") is None


def test_react_turn_calls_then_speaks() -> None:
    model, seen = replies(
        'PLAN search <COMMAND_END> APICALL {"name": "search_hotel", "parameters": {"area": "north"}} <COMMAND_END>',
        "PLAN tell them <COMMAND_END> SPEAK I found acorn guest house. <COMMAND_END>",
    )
    execute = Recorder()
    agent = ReactAgent(model, TOOLS)
    turn = asyncio.run(agent.step([UserMessage(content="a hotel in the north")], execute))
    assert execute.calls == [("search_hotel", {"area": "north"})]
    assert turn.message.content == "I found acorn guest house."
    assert [m.content.split(" ")[0] for m in turn.internal] == ["PLAN", "APIRETURN", "PLAN"]
    assert turn.internal[1].content == "APIRETURN " + json.dumps([{"name": "acorn guest house"}])
    assert turn.model_calls == 2 and len(turn.calls) == 1
    assert REACT_MARKER in seen[0].messages[0].content and '"search_hotel"' in seen[0].messages[0].content
    assert seen[1].messages[-1].content.startswith("APIRETURN")  # the result is fed back
    assert seen[0].seed == 42 and seen[0].temperature == 0.0


def test_react_errors_are_part_of_the_simulation() -> None:
    model, _ = replies("I will just chat", "APICALL {not json} <COMMAND_END>", "PLAN thinking <COMMAND_END>")
    execute = Recorder()
    turn = asyncio.run(ReactAgent(model, TOOLS).step([UserMessage(content="hi")], execute))
    assert execute.calls == []
    assert turn.message.content == OUT_OF_RETRIES
    contents = [m.content for m in turn.internal]
    assert contents[0] == NO_COMMAND
    assert contents[2] == "APIRETURN " + json.dumps(BAD_APICALL)
    assert turn.model_calls == 3 and len(turn.notes) == 3


def test_fc_agent_runs_the_first_call_and_reports_bad_json() -> None:
    good = ToolCall(id="c1", name="search_hotel", arguments={"area": "north"})
    extra = ToolCall(id="c2", name="search_hotel", arguments={})
    bad = ToolCall(id="c3", name="search_hotel", raw_arguments='{"area": ', parse_error="invalid JSON")
    model, seen = replies(
        AssistantMessage(tool_calls=(good, extra)),
        AssistantMessage(tool_calls=(bad,)),
        AssistantMessage(content="Acorn guest house is free."),
    )
    execute = Recorder()
    turn = asyncio.run(FunctionCallingAgent(model, TOOLS).step([UserMessage(content="hotel?")], execute))
    assert execute.calls == [("search_hotel", {"area": "north"})]
    assert turn.message.content == "Acorn guest house is free."
    tool_messages = [m for m in turn.internal if isinstance(m, ToolMessage)]
    assert tool_messages[0].tool_call_id == "c1" and "acorn" in tool_messages[0].content
    assert "NOT A VALID JSON OBJECT" in tool_messages[1].content
    assert seen[0].tools and seen[0].tools[0]["function"]["name"] == "search_hotel"


def test_fc_agent_out_of_retries() -> None:
    call = AssistantMessage(tool_calls=(ToolCall(id="c", name="search_hotel", arguments={}),))
    model, _ = replies(call, call, call)
    turn = asyncio.run(FunctionCallingAgent(model, TOOLS).step([UserMessage(content="x")], Recorder()))
    assert turn.message.content == OUT_OF_RETRIES and turn.internal[-1].content == OUT_OF_RETRIES


def test_goal_user_prompts_and_hang_up() -> None:
    model, seen = replies("Hi, I need a hotel.", "Thanks! END_CONVERSATION")
    user = GoalUserSimulator(model, ["You want a <span class='emphasis'>hotel</span>"])
    first = asyncio.run(user.step([]))
    assert first.message.content == "Hi, I need a hotel." and not first.done
    assert len(seen[0].messages) == 1 and USER_MARKER in seen[0].messages[0].content
    assert "<span class='emphasis'>hotel</span>" in seen[0].messages[0].content
    visible = [first.message, AssistantMessage(content="Booked.")]
    second = asyncio.run(user.step(visible))
    assert second.done
    roles = [m.role for m in seen[1].messages]
    assert roles == [
        "system",
        "assistant",
        "user",
        "system",
    ]  # the conversation seen from the customer's side
    assert isinstance(seen[1].messages[-1], SystemMessage) and seen[1].messages[-1].content.endswith(
        "CUSTOMER:"
    )


def test_guide_user_uses_the_coach_and_the_source_dialogue() -> None:
    model, seen = replies('Advice:\nAsk for a hotel.\nSuggested quote:\n"I need a hotel in the north."')
    turns = [("user", " I need a hotel "), ("assistant", "Which area?")]
    user = GuideUserSimulator(model, ["goal one"], turns)
    said = asyncio.run(user.step([]))
    assert said.message.content == "I need a hotel in the north." and not said.done
    prompt = seen[0].messages[0].content
    assert GUIDE_MARKER in prompt and "customer: I need a hotel" in prompt and "NOT YET STARTED" in prompt
    # the reference's transcript labels, kept as the paper ran them
    assert (
        transcript([UserMessage(content="hi"), AssistantMessage(content="hello")])
        == "agent: hi\nuser: hello\n"
    )


def test_replay_user_replays_then_hangs_up() -> None:
    user = ReplayUserSimulator([("user", "one"), ("assistant", "a"), ("user", "two")])
    first = asyncio.run(user.step([]))
    second = asyncio.run(user.step([first.message, AssistantMessage(content="a")]))
    third = asyncio.run(
        user.step(
            [first.message, AssistantMessage(content="a"), second.message, AssistantMessage(content="b")]
        )
    )
    assert (first.message.content, second.message.content) == ("one", "two")
    assert third.done and third.message.content == "END_CONVERSATION"


def test_strict_errors_reproduce_the_reference_crash() -> None:
    model, _ = replies(
        'PLAN x <COMMAND_END> APICALL {"name": "search_hotel", "parameters": "north"} <COMMAND_END>'
    )
    cause = turn_error(ReactAgent(model, TOOLS, strict_errors=True), Recorder()).cause
    assert isinstance(cause, AgentProtocolError) and "parameters" in str(cause)
    lenient, _ = replies(
        'PLAN x <COMMAND_END> APICALL {"name": "search_hotel", "parameters": "north"} <COMMAND_END>',
        "PLAN y <COMMAND_END> SPEAK sorry <COMMAND_END>",
    )
    execute = Recorder()
    turn = asyncio.run(ReactAgent(lenient, TOOLS).step([UserMessage(content="hi")], execute))
    assert execute.calls == [("search_hotel", "north")] and turn.message.content == "sorry"
    bad = ToolCall(id="c", name="search_hotel", raw_arguments="{", parse_error="invalid JSON")
    fc_model, _ = replies(AssistantMessage(tool_calls=(bad,)))
    cause = turn_error(FunctionCallingAgent(fc_model, TOOLS, strict_errors=True), Recorder()).cause
    assert isinstance(cause, AgentProtocolError)


def test_rollout_records_a_strict_error_as_reward_zero(toolwoz_env) -> None:
    from josh.rollout import run_conversation

    bad = ToolCall(id="c", name="search_hotel", raw_arguments="{", parse_error="invalid JSON")
    book = ToolCall(
        id="b",
        name="book_restaurant",
        arguments={"time": "18:45", "day": "sunday", "people": "6", "name": "ask"},
    )
    agent_model, _ = replies(AssistantMessage(tool_calls=(book,)), AssistantMessage(tool_calls=(bad,)))
    user_model, _ = replies("I need a table.")
    task = toolwoz_env.task("MUL0003")
    record = asyncio.run(
        run_conversation(
            "MUL0003",
            [g.name for g in task.goal_calls],
            toolwoz_env.session("MUL0003"),
            FunctionCallingAgent(agent_model, TOOLS, strict_errors=True),
            GoalUserSimulator(user_model, task.goal_messages),
        )
    )
    assert record.termination == "agent_error" and record.status == "success"
    assert record.reward == 0.0 and record.partial_reward == 0.25  # the booking was met before the crash
    assert record.reward_events == ["book_restaurant"] and any("strict" in n for n in record.notes)


def test_react_system_prompt_writes_the_tools_indented_for_each_set_of_tools() -> None:
    """The prompt with its tools is made once for each (prompt, tools), not once an agent; agents with other
    tools, or another prompt, get their own text."""
    model, _ = replies()
    first = [{"name": "search_hotel", "parameters": {"area": "str", "stars": [1, 2.5]}}]
    second = [{"name": "book_hotel", "parameters": {"é": None}}]
    a, b = ReactAgent(model, first, prompt="T:{tools}", tools_placeholder="{tools}"), ReactAgent(
        model, [dict(first[0])], prompt="T:{tools}", tools_placeholder="{tools}"
    )
    assert a.system_prompt == "T:" + json.dumps(first, indent=2) and a.system_prompt is b.system_prompt
    c = ReactAgent(model, second, prompt="T:{tools}", tools_placeholder="{tools}")
    assert c.system_prompt == "T:" + json.dumps(second, indent=2)
    assert ReactAgent(model, second, prompt="no tools here").system_prompt == "no tools here"
