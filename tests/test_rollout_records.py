"""What a conversation leaves in its record when models misbehave: every billed call counted, anything a
model sends written and read back, and the conversation going on as the simulation says."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from josh.agents import FunctionCallingAgent
from josh.envs.toolwoz import ToolWOZEnvironment
from josh.llm.base import RetryableLLMError
from josh.llm.ledger import CallLedger
from josh.llm.openai_compat.wire import parse_tool_call
from josh.llm.scripted import ChatRequest, ScriptedChatModel
from josh.rollout import run_conversation
from josh.runner import open_run, read_run
from josh.types import AssistantMessage, Usage
from josh.users import ReplayUserSimulator

pytestmark = pytest.mark.data


def scripted(*outputs: Any) -> ScriptedChatModel:
    queue = list(outputs)

    def policy(request: ChatRequest) -> Any:
        out = queue.pop(0)
        if isinstance(out, BaseException):
            raise out
        return out

    return ScriptedChatModel(policy)


def wire_call(arguments: str, name: str = "search_restaurant") -> AssistantMessage:
    """A reply as the LLM layer parses it off the wire (the arguments are the text the server sent)."""
    raw = {"id": "call_1", "type": "function", "function": {"name": name, "arguments": arguments}}
    return AssistantMessage(
        tool_calls=(parse_tool_call(raw),), usage=Usage(prompt_tokens=4000, completion_tokens=20)
    )


def converse(env: ToolWOZEnvironment, model: ScriptedChatModel, strict: bool) -> tuple[Any, CallLedger]:
    ledger = CallLedger()
    agent = FunctionCallingAgent(ledger.wrap(model, "agent"), env.tool_schemas, strict_errors=strict)
    user = ReplayUserSimulator([("user", "I need a cheap restaurant."), ("user", "Thanks, bye.")])
    record = asyncio.run(run_conversation("MUL0003", [], env.session("MUL0003"), agent, user, ledger=ledger))
    return record, ledger


def test_a_failure_mid_turn_keeps_the_billed_calls(toolwoz_env: ToolWOZEnvironment) -> None:
    model = scripted(wire_call('{"pricerange": "cheap"}'), RetryableLLMError("the endpoint gave up"))
    record, _ = converse(toolwoz_env, model, strict=True)
    assert record.status == "error" and "the endpoint gave up" in (record.error or "")
    # The call that ran is in the record, with its messages and its 4,000 billed prompt tokens.
    assert [c.name for c in record.calls] == ["search_restaurant"]
    assert [m.role for m in record.internal] == ["user", "assistant", "tool"]
    assert record.agent_usage.prompt_tokens == 4000 and record.agent_model_calls == 1
    assert [(c.role, c.prompt_tokens, c.error is not None) for c in record.model_calls] == [
        ("agent", 4000, False),
        ("agent", 0, True),
    ]


@pytest.mark.parametrize("strict", [True, False])
def test_any_reply_is_recorded_and_the_conversation_goes_on(
    toolwoz_env: ToolWOZEnvironment, tmp_path: Path, strict: bool
) -> None:
    deep = '{"name": ' + "[" * 300 + "1" + "]" * 300 + "}"
    model = scripted(
        wire_call('{"name": "a\\ud800b", "pricerange": "cheap"}'),  # a lone surrogate, escaped as JSON allows
        wire_call(deep),  # nested 300 deep
        AssistantMessage(content="I found nothing \ud800 for you.", usage=Usage(prompt_tokens=10)),
        AssistantMessage(content="Goodbye.", usage=Usage(prompt_tokens=10)),
    )
    record, _ = converse(toolwoz_env, model, strict=strict)
    assert record.status == "success" and record.termination == "user_ended"  # the simulation went on
    assert [c.result for c in record.calls][1].startswith("ERROR: INVALID API CALL! LISTS AND DICTS")
    path = tmp_path / "run.jsonl"
    writer = open_run(path, config={}, config_hash="h", seed=0, resume=False, command="test")
    writer.write(record.model_dump(mode="json"))
    writer.close("success")
    for line in path.read_bytes().splitlines():
        json.loads(line.decode("utf-8"))  # strict UTF-8, valid JSON
    [saved] = read_run(path).records
    assert saved["calls"][0]["arguments"]["name"] == "a\ufffdb"
    assert "\ufffd" in saved["messages"][1]["content"]
    again = open_run(path, config={}, config_hash="h", seed=0, resume=True, command="test")  # resumable
    assert ("MUL0003", 0) in again.done
    again.close("success")


def test_a_search_the_reference_crashes_on_ends_a_strict_conversation(
    toolwoz_env: ToolWOZEnvironment,
) -> None:
    from josh.errors import ProtocolViolation

    lenient = toolwoz_env.session("MUL0003")
    assert lenient.call("search_hospital", {"department": "nothing"}) == []  # nothing found: no crash
    assert lenient.call("search_taxi", {})[0]["taxi_types"][0] == "toyota"
    strict = toolwoz_env.session("MUL0003", strict=True)
    assert strict.call("search_hospital", {"department": "nothing"}) == []
    with pytest.raises(ProtocolViolation, match="without 'name'"):
        strict.call("search_hospital", {"department": "neurosciences"})
    assert [c.name for c in strict.calls] == ["search_hospital", "search_hospital"]  # recorded all the same
    assert strict.fork().strict

    def taxi_then_speak() -> ScriptedChatModel:
        return scripted(wire_call("{}", name="search_taxi"), AssistantMessage(content="Done."),
                        AssistantMessage(content="Bye."))  # fmt: skip

    for strict_errors, termination, reward in [(True, "agent_error", 0.0), (False, "user_ended", 0.0)]:
        ledger = CallLedger()
        agent = FunctionCallingAgent(ledger.wrap(taxi_then_speak(), "agent"), toolwoz_env.tool_schemas)
        user = ReplayUserSimulator([("user", "A taxi please."), ("user", "Thanks.")])
        session = toolwoz_env.session("MUL0003", strict=strict_errors)
        record = asyncio.run(run_conversation("MUL0003", [], session, agent, user, ledger=ledger))
        assert (record.status, record.termination, record.reward) == ("success", termination, reward)
        assert [c.name for c in record.calls] == ["search_taxi"]
        assert any("search_taxi returned a record without 'name'" in n for n in record.notes) == strict_errors
