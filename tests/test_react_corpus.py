"""ReAct parsing quirks on a corpus of made-up model outputs (tests/react_corpus.json).

Each case is one agent turn: the model's replies in order, and, worked out by hand from the reference's
`ReACTAgentSimulator.step`, what ends the turn ("speak", "out_of_calls" after three model calls, or "crash"
where the reference raises) and how many tool calls run. tests/conformance/test_react_reference.py checks
the same corpus message by message against the reference itself.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from josh.agents import AgentProtocolError, ReactAgent
from josh.agents.base import AgentTurnError
from josh.agents.prompts import OUT_OF_RETRIES
from josh.llm.scripted import ChatRequest, ScriptedChatModel
from josh.types import message_from_dict

CORPUS_PATH = Path(__file__).with_name("react_corpus.json")
CORPUS: list[dict[str, Any]] = json.loads(CORPUS_PATH.read_text())
DEFAULT_HISTORY = [{"role": "user", "content": "I need a hotel in the north."}]
AFTER_CORPUS = "(past the corpus replies)"
TOOLS = [{"type": "function", "function": {"name": "search_hotel", "parameters": {"type": "object"}}}]


def fake_result(index: int, name: Any) -> list[dict[str, Any]]:
    """What a tool call returns (the reference harness's executor returns the same)."""
    return [{"call": index, "name": name}]


@dataclass
class Outcome:
    """One turn of our ReactAgent on a case."""

    internal: list[dict[str, Any]]
    calls: list[list[Any]]
    model_calls: int
    spoken: str | None  # what the customer is told; None when the turn raised
    error: BaseException | None = None
    notes: list[str] = field(default_factory=list)


def run_ours(case: dict[str, Any], *, strict: bool) -> Outcome:
    replies = list(case["replies"])
    calls: list[list[Any]] = []

    def policy(request: ChatRequest) -> str:
        # Past a "crash" case's replies (the lenient turn goes on): speak.
        return replies.pop(0) if replies else f"SPEAK {AFTER_CORPUS} <COMMAND_END>"

    def execute(name: Any, arguments: Any) -> Any:
        calls.append([name, arguments])
        return fake_result(len(calls) - 1, name)

    model = ScriptedChatModel(policy)
    agent = ReactAgent(model, TOOLS, strict_errors=strict)
    history = [message_from_dict(m) for m in case.get("history", DEFAULT_HISTORY)]
    try:
        turn = asyncio.run(agent.step(history, execute))
    except AgentTurnError as exc:
        internal = [{"role": m.role, "content": m.content} for m in exc.turn.internal]
        return Outcome(internal, calls, exc.turn.model_calls, None, exc.cause, exc.turn.notes)
    internal = [{"role": m.role, "content": m.content} for m in turn.internal]
    return Outcome(internal, calls, turn.model_calls, turn.message.content, None, turn.notes)


def test_the_corpus_covers_the_quirks() -> None:
    ids = [c["id"] for c in CORPUS]
    assert len(ids) == len(set(ids)) >= 40
    assert {c["ends"] for c in CORPUS} == {"speak", "out_of_calls", "crash"}
    assert all(1 <= len(c["replies"]) <= 3 for c in CORPUS)


@pytest.mark.parametrize("case", CORPUS, ids=[c["id"] for c in CORPUS])
def test_what_ends_the_turn_and_what_runs(case: dict[str, Any]) -> None:
    lenient = run_ours(case, strict=False)
    assert lenient.error is None  # lenient: every protocol error is part of the simulation
    assert len(lenient.calls) >= case["calls"]
    assert lenient.spoken != AFTER_CORPUS or case["ends"] == "crash"
    strict = run_ours(case, strict=True)
    if case["ends"] == "crash":
        assert isinstance(strict.error, AgentProtocolError), strict.error
        assert len(strict.calls) == case["calls"] and strict.model_calls == len(case["replies"])
        return
    assert strict.error is None
    assert len(lenient.calls) == case["calls"] and lenient.model_calls == len(case["replies"])
    assert (lenient.spoken == OUT_OF_RETRIES) == (case["ends"] == "out_of_calls")
    assert (strict.internal, strict.calls, strict.spoken) == (lenient.internal, lenient.calls, lenient.spoken)


def test_some_quirks_by_hand() -> None:
    """A few cases spelled out in full."""
    by_id = {c["id"]: c for c in CORPUS}
    plan = run_ours(by_id["command_words_inside_plan"], strict=False)
    assert plan.spoken == "to the customer about the"
    assert plan.internal == [
        {
            "role": "assistant",
            "content": "PLAN I will <COMMAND_END> SPEAK to the customer about the <COMMAND_END>",
        }
    ]
    newlines = run_ours(by_id["newlines_inside_commands"], strict=False)
    assert newlines.spoken == "Hellothere, howcan I help?"
    assert run_ours(by_id["backslashes_in_speak"], strict=False).spoken == "The file is C:newtable.txt"
    assert run_ours(by_id["lowercase_command_end"], strict=False).spoken == "hi <command_end>"
    unicode = run_ours(by_id["unicode_escape_in_json"], strict=False)
    assert unicode.calls == [["search_hotel", {"name": "cafu00e9"}]]
    two = run_ours(by_id["two_apicalls_in_one_reply"], strict=False)
    assert [m["content"].split(" APICALL ")[0] for m in two.internal[:3:2]] == ["PLAN both <COMMAND_END>"] * 2
    crash = run_ours(by_id["good_call_then_crash_in_one_reply"], strict=True)
    assert crash.calls == [["search_hotel", {"area": "north"}]]
    assert [m["role"] for m in crash.internal] == ["assistant", "user", "assistant"]  # + the crashing APICALL
