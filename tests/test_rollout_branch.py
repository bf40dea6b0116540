"""`ConversationBranch`: a conversation that forks, for the JOSH search, over a real ToolWOZ session."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from josh.agents import ReactAgent
from josh.envs.toolwoz import ToolWOZEnvironment
from josh.llm.base import ChatModel, EndpointError, RetryableLLMError
from josh.llm.scripted import ChatRequest, ScriptedChatModel
from josh.rollout.branch import ConversationBranch
from josh.users import GoalUserSimulator, ReplayUserSimulator

pytestmark = pytest.mark.data

TASK = "MUL0001"  # first goal call: search_hotel
SPEAK = "PLAN reply <COMMAND_END> SPEAK Anything else? <COMMAND_END>"


def apicall(env: ToolWOZEnvironment, parameters: Any = None) -> str:
    goal = env.task(TASK).goal_calls[0]
    parameters = goal.arguments if parameters is None else parameters
    return f"APICALL {json.dumps({'name': goal.name, 'parameters': parameters})} <COMMAND_END>"


def branch(
    env: ToolWOZEnvironment, policy: Any, *, use_n: bool = True, user: Any = None
) -> ConversationBranch:
    def make_agent(model: ChatModel) -> ReactAgent:
        return ReactAgent(model=model, tools=env.tool_schemas, temperature=1.0, seed=42, strict_errors=True)

    user = user or ReplayUserSimulator([("user", "I need a hotel."), ("user", "Thanks.")])
    return ConversationBranch(
        env.session(TASK, strict=True),
        ScriptedChatModel(policy),
        make_agent,
        user,
        metadata={"task_id": TASK, "trial": "0"},
        use_n=use_n,
    )


def test_forked_branches_have_their_own_session_and_turn_rewards(toolwoz_env: ToolWOZEnvironment) -> None:
    def policy(request: ChatRequest) -> str:
        if request.messages[-1].content.startswith("APIRETURN"):
            return SPEAK
        return apicall(toolwoz_env) if request.index == 0 else SPEAK  # the shared call: choice 0 searches

    root = branch(toolwoz_env, policy)

    async def go() -> tuple[Any, ...]:
        await root.user_turn()
        left, right = root.fork(2)
        first = await asyncio.gather(left.agent_turn(), right.agent_turn())
        await left.user_turn()
        again = await left.agent_turn()  # the same call again: the goal is no longer pending
        return left, right, *first, again

    left, right, left_turn, right_turn, again = asyncio.run(go())
    assert left_turn.reward_events == ["search_hotel"] and right_turn.reward_events == []
    assert again.reward_events == [] and not again.over
    assert [g.name for g in left.session.reward_events] == ["search_hotel"]
    assert right.session.reward_events == [] and root.session.reward_events == []
    assert [m.role for m in left_turn.messages] == [
        "assistant",
        "user",
        "assistant",
    ]  # call, APIRETURN, reply
    assert [m.content for m in left.visible] == [
        "I need a hotel.",
        "Anything else?",
        "Thanks.",
        "Anything else?",
    ]
    assert [m.content for m in right.visible] == ["I need a hotel.", "Anything else?"]
    assert len(root.internal) == 1  # the parent's view is not touched by its children


def test_without_n_every_sibling_sends_its_own_seed(toolwoz_env: ToolWOZEnvironment) -> None:
    seeds: list[int | None] = []

    def policy(request: ChatRequest) -> str:
        seeds.append(request.seed)
        return SPEAK

    root = branch(toolwoz_env, policy, use_n=False)

    async def go() -> None:
        await root.user_turn()
        children = root.fork(2)
        grandchildren = [g for c in children for g in c.fork(2)]
        for leaf in [*children, *grandchildren]:
            await leaf.agent_turn()

    asyncio.run(go())
    # Seed 42 plus the shift: children 1 and 2; their children 3, 4 and 5, 6 (2s + 1, 2s + 2).
    assert seeds == [43, 44, 45, 46, 47, 48]


def test_a_protocol_violation_ends_the_branch_and_keeps_the_message(toolwoz_env: ToolWOZEnvironment) -> None:
    root = branch(
        toolwoz_env, lambda r: apicall(toolwoz_env, parameters=["not", "an", "object"]), use_n=False
    )

    async def go() -> Any:
        await root.user_turn()
        return await root.agent_turn()

    turn = asyncio.run(go())
    assert turn.over and turn.reward_events == []
    assert "APICALL" in turn.messages[-1].content and "strict errors: this branch ends here" in turn.notes[-1]
    assert [m.role for m in root.visible] == ["user"]  # nothing was said to the customer


def test_endpoint_errors_and_bugs_propagate(toolwoz_env: ToolWOZEnvironment) -> None:
    for error in (EndpointError("key rejected"), ValueError("a bug")):

        def policy(request: ChatRequest, error: BaseException = error) -> str:
            raise error

        root = branch(toolwoz_env, policy, use_n=False)
        with pytest.raises(type(error)):
            asyncio.run(root.agent_turn())


def test_the_customer_ends_a_branch(toolwoz_env: ToolWOZEnvironment) -> None:
    root = branch(toolwoz_env, lambda r: SPEAK, use_n=False, user=ReplayUserSimulator([("user", "Hi.")]))

    async def go() -> Any:
        await root.user_turn()
        await root.agent_turn()
        return await root.user_turn()  # the replay has no more lines: END_CONVERSATION

    done = asyncio.run(go())
    assert done.done and "END_CONVERSATION" in done.messages[0].content


def test_a_customer_model_that_fails_ends_the_branch(toolwoz_env: ToolWOZEnvironment) -> None:
    def fail(request: ChatRequest) -> str:
        raise RetryableLLMError("the customer's endpoint gave up")

    user = GoalUserSimulator(ScriptedChatModel(fail), ["Find a hotel."])
    outcome = asyncio.run(branch(toolwoz_env, lambda r: SPEAK, use_n=False, user=user).user_turn())
    assert outcome.done and outcome.messages == []
    assert outcome.notes == ["the customer's turn failed: RetryableLLMError: the customer's endpoint gave up"]
    user = GoalUserSimulator(ScriptedChatModel(lambda r: (_ for _ in ()).throw(EndpointError("no"))), ["x"])
    with pytest.raises(EndpointError):
        asyncio.run(branch(toolwoz_env, lambda r: SPEAK, use_n=False, user=user).user_turn())
