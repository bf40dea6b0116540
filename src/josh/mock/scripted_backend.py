"""The `scripted` backend: the mock endpoint's policies called in-process, without HTTP."""

from __future__ import annotations

import dataclasses
from typing import Any

from josh.envs.toolwoz import ToolWOZEnvironment
from josh.llm.openai_model import metadata_headers, parse_tool_call, to_wire
from josh.llm.scripted import ChatRequest, ScriptedChatModel
from josh.mock.policies import MockConfig, ScriptedToolWOZ
from josh.types import AssistantMessage, Usage


def _message(choice: dict[str, Any]) -> AssistantMessage:
    raw_calls = choice.get("tool_calls")
    calls = tuple(parse_tool_call(raw) for raw in raw_calls or [])
    empty = isinstance(raw_calls, list) and not raw_calls  # `tool_calls: []`, as the HTTP client reads it
    return AssistantMessage(content=choice.get("content") or "", tool_calls=calls, empty_tool_calls=empty)


def scripted_model(
    env: ToolWOZEnvironment, config: MockConfig | None = None, name: str = "scripted"
) -> ScriptedChatModel:
    """A chat model that plays the mock's scripted agent or customer, in-process and deterministic.

    Transport faults (HTTP 500s, hangs, latency) need HTTP and are left out; mistakes, malformed tool calls
    and empty replies are kept.
    """
    config = dataclasses.replace(config or MockConfig(), error_rate=0.0, hang_rate=0.0, latency_s=0.0)
    policy = ScriptedToolWOZ(env, config)

    def answer(request: ChatRequest) -> AssistantMessage:
        body: dict[str, Any] = {"model": name, "messages": [to_wire(m) for m in request.messages]}
        if request.tools:
            body["tools"] = list(request.tools)
        headers = metadata_headers(request.metadata)
        response = policy.complete(body, headers)
        usage = response["usage"]
        message = _message(response["choices"][0]["message"])
        return message.model_copy(
            update={
                "usage": Usage(
                    prompt_tokens=usage["prompt_tokens"], completion_tokens=usage["completion_tokens"]
                ),
                "model": name,
                "latency_s": 0.0,
            }
        )

    return ScriptedChatModel(policy=answer, name=name)
