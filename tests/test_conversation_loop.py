"""The conversation loop on a toy session: the paper's turn limit and how a conversation ends."""

from __future__ import annotations

import asyncio
from typing import Any

from josh.agents import ReactAgent
from josh.benchmarks.toolwoz_config import ToolWOZEvalConfig
from josh.llm.scripted import ChatRequest, ScriptedChatModel
from josh.rollout import run_conversation
from josh.users import ReplayUserSimulator

TOOLS = [{"type": "function", "function": {"name": "search_hotel", "parameters": {"type": "object"}}}]


class ToySession:
    """No tools are called in these conversations; the score is fixed."""

    calls: list[Any] = []

    def call(self, name: Any, arguments: Any = None) -> Any:
        return "ERROR: no tools here"

    def score(self) -> float:
        return 0.5

    def failed_goals(self) -> list[Any]:
        return []


def talkative(customer_lines: int, **options: Any) -> Any:
    """A customer with `customer_lines` lines and an agent that answers each at once."""
    agent = ReactAgent(ScriptedChatModel(lambda r: "SPEAK ok <COMMAND_END>"), TOOLS)
    user = ReplayUserSimulator([("user", f"line {i}") for i in range(customer_lines)])
    return asyncio.run(run_conversation("T1", [], ToySession(), agent, user, **options))


def test_the_default_turn_limit_is_the_papers_15_messages() -> None:
    # The loop runs while fewer than 15 messages were said; each round adds 2 (customer, agent):
    # 0 -> 2 -> ... -> 14 (< 15: one more round) -> 16, then it stops: 8 customer and 8 agent messages.
    record = talkative(20)
    assert record.termination == "max_turns" and len(record.messages) == 16
    assert [m.content for m in record.messages[::2]] == [f"line {i}" for i in range(8)]
    assert record.agent_model_calls == 8 and record.reward == 0.5
    assert ToolWOZEvalConfig().max_turns == 15  # the CLI's default is the same


def test_a_smaller_limit_and_a_customer_who_hangs_up() -> None:
    # max_turns 6: 0 -> 2 -> 4 -> 6 stops: 3 rounds.
    assert len(talkative(20, max_turns=6).messages) == 6
    # max_turns 5: 0 -> 2 -> 4 (< 5) -> 6: an odd limit still ends after the agent's reply.
    assert len(talkative(20, max_turns=5).messages) == 6
    # 2 lines, then the replay customer hangs up (its third message) before the limit: 2 rounds + 1.
    ended = talkative(2)
    assert ended.termination == "user_ended" and len(ended.messages) == 5
    assert ended.messages[-1].role == "user" and ended.agent_model_calls == 2


def test_trial_and_seed_are_recorded_and_sent_as_metadata() -> None:
    seen: list[ChatRequest] = []

    def policy(request: ChatRequest) -> str:
        seen.append(request)
        return "SPEAK ok <COMMAND_END>"

    agent = ReactAgent(ScriptedChatModel(policy), TOOLS, seed=45)
    user = ReplayUserSimulator([("user", "hi")])
    record = asyncio.run(
        run_conversation("T9", [], ToySession(), agent, user, trial=3, seed=45, metadata={"run": "r1"})
    )
    assert (record.task_id, record.trial, record.seed) == ("T9", 3, 45)
    assert [(r.seed, r.metadata) for r in seen] == [
        (45, {"task_id": "T9", "trial": "3", "run": "r1", "role": "agent"})
    ]
