"""The conversation loop on a toy session: the paper's turn limit and how a conversation ends."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace
from typing import Any

from josh.agents import ReactAgent
from josh.benchmarks.toolwoz.config import ToolWOZEvalConfig
from josh.llm.base import RetryableLLMError
from josh.llm.ledger import CallLedger
from josh.llm.scripted import ChatRequest, ScriptedChatModel
from josh.rollout import run_conversation
from josh.types import AssistantMessage, Usage, UserMessage
from josh.users import ReplayUserSimulator
from josh.users.simulators import UserTurn

TOOLS = [{"type": "function", "function": {"name": "search_hotel", "parameters": {"type": "object"}}}]


class ToySession:
    """No tools are called in these conversations; the score is fixed."""

    calls: list[Any] = []

    def call(self, name: Any, arguments: Any = None) -> Any:
        return "ERROR: no tools here"

    def score(self) -> float:
        return 0.5

    def result_text(self, result: Any) -> str:
        return json.dumps(result)

    def say(self, role: str, content: Any) -> None:
        pass

    def final_reward(self, ended: bool) -> float:
        return self.score()

    opening: str | None = None

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


class ToolSessionStub:
    """Records calls like an environment session: a call to `book_hotel` meets the one goal."""

    def __init__(self) -> None:
        self.calls: list[Any] = []

    def call(self, name: Any, arguments: Any = None) -> Any:
        rewards = ("book_hotel",) if name == "book_hotel" else ()
        self.calls.append(
            SimpleNamespace(name=name, arguments=arguments, result=[len(self.calls)], rewards=rewards)
        )
        return [len(self.calls) - 1]

    def score(self) -> float:
        return 1.0 if any(c.rewards for c in self.calls) else 0.0

    def result_text(self, result: Any) -> str:
        return json.dumps(result)

    def say(self, role: str, content: Any) -> None:
        pass

    def final_reward(self, ended: bool) -> float:
        return self.score()

    opening: str | None = None

    def failed_goals(self) -> list[Any]:
        return [] if self.score() else [SimpleNamespace(name="book_hotel")]


class GoalUser:
    """Says three lines through a model (so the ledger counts its calls), then hangs up."""

    def __init__(self, model: Any) -> None:
        self.model = model
        self.seen: list[Any] = []

    async def step(self, visible: Any, *, metadata: Any = None) -> Any:
        self.seen.append(dict(metadata))
        said = sum(m.role == "user" for m in visible)
        text = "END_CONVERSATION" if said == 3 else f"line {said}"
        await self.model.chat([], metadata=metadata)
        return UserTurn(UserMessage(content=text), text == "END_CONVERSATION", Usage(prompt_tokens=999), 1)


def test_calls_usage_and_metadata_of_a_whole_conversation() -> None:
    agent_requests: list[ChatRequest] = []
    replies = iter([
        'APICALL {"name": "search_hotel", "parameters": {"area": "north"}} <COMMAND_END>',
        "SPEAK found one <COMMAND_END>",
        'APICALL {"name": "book_hotel", "parameters": {"name": "acorn"}} <COMMAND_END>',
        "SPEAK booked <COMMAND_END>",
        "SPEAK bye <COMMAND_END>",
    ])  # fmt: skip

    def agent_policy(request: ChatRequest) -> AssistantMessage:
        agent_requests.append(request)
        return AssistantMessage(content=next(replies), usage=Usage(prompt_tokens=100, completion_tokens=10))

    def user_policy(request: ChatRequest) -> AssistantMessage:
        return AssistantMessage(content="", usage=Usage(prompt_tokens=7, completion_tokens=3))

    ledger = CallLedger()
    agent = ReactAgent(ledger.wrap(ScriptedChatModel(agent_policy), "agent"), TOOLS, seed=44)
    user = GoalUser(ledger.wrap(ScriptedChatModel(user_policy), "user"))
    record = asyncio.run(
        run_conversation("T5", ["search_hotel", "book_hotel"], ToolSessionStub(), agent, user,
                         trial=2, seed=44, metadata={"run": "r"}, ledger=ledger)
    )  # fmt: skip
    assert (record.status, record.termination, record.reward, record.partial_reward) == (
        "success", "user_ended", 1.0, 1.0
    )  # fmt: skip
    # 3 customer lines + hang-up, 3 agent replies: 7 visible messages.
    assert [m.content for m in record.messages] == [
        "line 0", "found one", "line 1", "booked", "line 2", "bye", "END_CONVERSATION"
    ]  # fmt: skip
    # The calls with the agent turn they were made in (turns 0 and 1) and the goal they met.
    assert [(c.turn, c.name, c.arguments, c.rewards) for c in record.calls] == [
        (0, "search_hotel", {"area": "north"}, []), (1, "book_hotel", {"name": "acorn"}, ["book_hotel"])
    ]  # fmt: skip
    assert record.reward_events == ["book_hotel"] and record.failed_goals == []
    assert record.goal_calls == ["search_hotel", "book_hotel"]
    assert (record.task_id, record.trial, record.seed) == ("T5", 2, 44)
    # From the ledger: 5 agent calls of 100 + 10 tokens, 4 customer calls of 7 + 3 (not the 999 it claimed).
    assert (record.agent_model_calls, record.user_model_calls) == (5, 4)
    assert record.agent_usage == Usage(prompt_tokens=500, completion_tokens=50)
    assert record.user_usage == Usage(prompt_tokens=28, completion_tokens=12)
    assert [(c.role, c.prompt_tokens) for c in record.model_calls] == [
        ("user", 7), ("agent", 100), ("agent", 100), ("user", 7), ("agent", 100), ("agent", 100),
        ("user", 7), ("agent", 100), ("user", 7),
    ]  # fmt: skip
    base = {"task_id": "T5", "trial": "2", "run": "r"}
    assert user.seen == [{**base, "role": "user", "turn": str(n)} for n in (0, 2, 4, 6)]
    assert {tuple(sorted(r.metadata.items())) for r in agent_requests} == {
        tuple(sorted({**base, "role": "agent"}.items()))
    }
    assert record.latency_s >= 0 and record.error is None


def test_without_a_ledger_the_turns_own_counts_are_recorded() -> None:
    agent = ReactAgent(ScriptedChatModel(lambda r: AssistantMessage(
        content="SPEAK ok <COMMAND_END>", usage=Usage(prompt_tokens=4, completion_tokens=1))), TOOLS)  # fmt: skip
    user = GoalUser(ScriptedChatModel(lambda r: ""))
    record = asyncio.run(run_conversation("T6", [], ToolSessionStub(), agent, user))
    # 3 agent turns of one call each; the user's own count (1 a line, 4 lines) and its claimed usage
    assert (record.agent_model_calls, record.user_model_calls) == (3, 4)
    assert record.agent_usage == Usage(prompt_tokens=12, completion_tokens=3)
    assert record.user_usage.prompt_tokens == 4 * 999 and record.model_calls == []
    assert record.failed_goals == ["book_hotel"] and record.reward == 0.0


def test_a_bug_is_recorded_with_its_trace_and_a_protocol_error_ends_with_reward_0() -> None:
    def crash(request: ChatRequest) -> str:
        raise ZeroDivisionError("division by zero")

    user = ReplayUserSimulator([("user", "hi"), ("user", "again")])
    bug = asyncio.run(
        run_conversation("T7", [], ToolSessionStub(), ReactAgent(ScriptedChatModel(crash), TOOLS), user)
    )
    assert (bug.status, bug.termination, bug.reward, bug.partial_reward) == ("error", "error", None, 0.0)
    first, _, trace = (bug.error or "").partition("\n")
    assert first == "ZeroDivisionError: division by zero"
    assert trace.startswith("Traceback (most recent call last):") and "in crash" in trace
    strict = ReactAgent(ScriptedChatModel(lambda r: 'APICALL {"name": "search_hotel", "parameters": 3} <COMMAND_END>'),
                        TOOLS, strict_errors=True)  # fmt: skip
    protocol = asyncio.run(run_conversation("T8", [], ToolSessionStub(), strict, user))
    assert (protocol.status, protocol.termination, protocol.reward, protocol.error) == (
        "success", "agent_error", 0.0, None
    )  # fmt: skip
    assert protocol.notes == [
        "turn 0: APICALL parameters is a number, not an object (strict errors: the conversation ends with reward 0)"
    ]


def test_call_turns_count_up_and_a_trace_keeps_eight_frames() -> None:
    replies = iter(
        [f'APICALL {{"name": "search_hotel", "parameters": {{"n": {i}}}}} <COMMAND_END>' for i in range(3)]
    )

    async def policy(request: ChatRequest) -> str:
        text = next(replies, None)
        if text is None:
            return "SPEAK ok <COMMAND_END>"
        await asyncio.sleep(0.002)  # some latency to record (a lower bound, not a timing assert)
        return text + " SPEAK ok <COMMAND_END>"

    user = ReplayUserSimulator([("user", f"line {i}") for i in range(4)])
    agent = ReactAgent(ScriptedChatModel(policy), TOOLS)
    record = asyncio.run(run_conversation("T10", [], ToolSessionStub(), agent, user))
    assert [c.turn for c in record.calls] == [0, 1, 2]  # one call in each of the first three agent turns
    assert 0.006 <= record.latency_s < 60  # three 2 ms waits at least

    def deep(depth: int) -> str:
        if depth == 0:
            raise ZeroDivisionError("deep")
        return deep(depth - 1)

    bug_agent = ReactAgent(ScriptedChatModel(lambda request: deep(20)), TOOLS)
    bug = asyncio.run(run_conversation("T11", [], ToolSessionStub(), bug_agent, user))
    trace = (bug.error or "").split("\n", 1)[1]
    # the traceback is cut to its first 8 frames, then the exception line
    assert trace.count('\n  File "') == 8 and trace.endswith("ZeroDivisionError: deep\n")
    assert trace.startswith("Traceback (most recent call last):\n  File ")


def test_a_failed_customer_call_is_not_counted_as_made() -> None:
    answers = iter([AssistantMessage(content="", usage=Usage(prompt_tokens=7)), RetryableLLMError("gave up")])

    def user_policy(request: ChatRequest) -> AssistantMessage:
        answer = next(answers)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    ledger = CallLedger()
    agent = ReactAgent(ledger.wrap(ScriptedChatModel(lambda r: "SPEAK ok <COMMAND_END>"), "agent"), TOOLS)
    user = GoalUser(ledger.wrap(ScriptedChatModel(user_policy), "user"))
    record = asyncio.run(run_conversation("T12", [], ToolSessionStub(), agent, user, ledger=ledger))
    assert record.status == "error" and record.error == "RetryableLLMError: gave up"
    # the customer's first call finished, its second failed: 1 made, 2 in the ledger
    assert (record.user_model_calls, record.agent_model_calls) == (1, 1)
    assert [(c.role, c.error is not None) for c in record.model_calls] == [
        ("user", False), ("agent", False), ("user", True)
    ]  # fmt: skip
