"""The `scripted` backend: the mock endpoint's policies called in-process, without HTTP."""

from __future__ import annotations

import dataclasses
import json
import uuid
from typing import Any

from josh.envs.toolwoz import ToolWOZEnvironment
from josh.llm.scripted import ChatRequest, ScriptedChatModel
from josh.mock.policies import MockConfig, ScriptedToolWOZ
from josh.types import AssistantMessage, Message, ToolCall, Usage


def _wire(message: Message) -> dict[str, Any]:
    data: dict[str, Any] = {"role": message.role, "content": getattr(message, "content", "")}
    if message.role == "assistant" and message.tool_calls:
        data["tool_calls"] = [
            {
                "id": c.id,
                "type": "function",
                "function": {"name": c.name, "arguments": json.dumps(c.arguments)},
            }
            for c in message.tool_calls
        ]
    if message.role == "tool":
        data["tool_call_id"] = message.tool_call_id
    return data


def header_name(key: str) -> str:
    """`task_id` -> `X-Josh-Task-Id`: how metadata travels as HTTP headers."""
    return "X-Josh-" + "-".join(part.capitalize() for part in key.split("_"))


def _message(choice: dict[str, Any]) -> AssistantMessage:
    calls = []
    for raw in choice.get("tool_calls") or []:
        text = raw["function"]["arguments"]
        try:
            arguments = json.loads(text)
            error = None if isinstance(arguments, dict) else "arguments are not a JSON object"
        except json.JSONDecodeError as exc:
            arguments, error = None, f"invalid JSON: {exc.msg}"
        calls.append(
            ToolCall(
                id=raw.get("id") or f"call_{uuid.uuid4().hex[:8]}",
                name=raw["function"]["name"],
                arguments=arguments if isinstance(arguments, dict) else {},
                raw_arguments=None if error is None else text,
                parse_error=error,
            )
        )
    return AssistantMessage(content=choice.get("content") or "", tool_calls=tuple(calls))


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
        body: dict[str, Any] = {"model": name, "messages": [_wire(m) for m in request.messages]}
        if request.tools:
            body["tools"] = list(request.tools)
        headers = {header_name(k): v for k, v in request.metadata.items()}
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
