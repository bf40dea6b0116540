"""Messages for training files: josh messages as OpenAI-style dicts (and back), and the protocol-error filter.

TRL applies a model's chat template to OpenAI-style messages: `{"role", "content"}`, an assistant's
`tool_calls` as `[{"id", "type": "function", "function": {"name", "arguments": JSON text}}]` and a tool
result's `tool_call_id`. The arguments stay the text the model sent, so a malformed call is kept as it was.

The protocol-error filter is the intent of the paper's `clean_good_utterance` (josh-train 0.1.4,
`finetune/sft_agent_successful.py` lines 64-89, `finetune/finetune_agent.py` lines 59-73): a model reply is
not a good example when it is one of the agent's stand-ins for a reply that failed, wrote a tool result
itself, or made a tool call that was malformed or never answered. A well-formed call that the tool refused
on its merits (a wrong value) is kept: that is the simulation, not the protocol.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from josh.types import AssistantMessage, Message, SystemMessage, ToolCall, ToolMessage, UserMessage

APIRETURN = "APIRETURN"  # how the ReAct agent's tool results start (the reference's user-role messages)
# What the paper's filter looks for in a reply: the agent's stand-ins "ERROR: NO COMMAND FOUND", "ERROR:
# INVALID COMMAND TYPE" and "Error: Agent ran out of retries." (also any reply that writes these words).
ERROR_MARKS = ("ERROR:", "Error:")
FAILURE_MARK = (
    "FAILURE"  # the ReAct tool result of a malformed APICALL: "FAILURE INCORRECTLY FORMATTED APICALL"
)
STRICT_ERRORS_NOTE = "(strict errors:"  # how a note of a turn that ended its branch under strict errors ends
# Replies the agent wrote in place of the model's (the model's own words are not in the record)
STAND_INS = frozenset(
    {"ERROR: NO COMMAND FOUND", "ERROR: INVALID COMMAND TYPE", "Error: Agent ran out of retries."}
)


def to_openai(message: Message) -> dict[str, Any]:
    """`message` as an OpenAI-style dict (what chat templates and TRL read)."""
    if isinstance(message, AssistantMessage):
        out: dict[str, Any] = {"role": "assistant", "content": message.content}
        if message.tool_calls:
            out["tool_calls"] = [_tool_call(call) for call in message.tool_calls]
        return out
    if isinstance(message, ToolMessage):
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
    return {"role": message.role, "content": message.content}


class OpenAIForms:
    """`to_openai`, converting each message object once: the prompts of one tree's examples share their
    messages, so they share the dicts too (a tree's KTO prompts repeat its messages many times)."""

    def __init__(self) -> None:
        self._seen: dict[int, tuple[Message, dict[str, Any]]] = {}  # keeps the message alive: ids stay unique

    def __call__(self, message: Message) -> dict[str, Any]:
        hit = self._seen.get(id(message))
        if hit is None:
            hit = self._seen[id(message)] = (message, to_openai(message))
        return hit[1]


def _tool_call(call: ToolCall) -> dict[str, Any]:
    arguments = call.raw_arguments if call.raw_arguments is not None else json.dumps(call.arguments)
    return {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": arguments}}


def from_openai(data: Any) -> Message:
    """A josh message from an OpenAI-style dict; `ValueError` saying what is wrong when it is not one."""
    if not isinstance(data, Mapping):
        raise ValueError(f"a message is {type(data).__name__}, not an object")
    role, content = data.get("role"), data.get("content")
    if content is None:
        content = ""
    if not isinstance(content, str):
        raise ValueError(f"a {role} message's content is {type(content).__name__}, not text")
    if role == "user":
        return UserMessage(content=content)
    if role == "system":
        return SystemMessage(content=content)
    if role == "tool":
        return ToolMessage(tool_call_id=str(data.get("tool_call_id") or ""), content=content)
    if role == "assistant":
        calls = data.get("tool_calls") or []
        if not isinstance(calls, list):
            raise ValueError("an assistant message's tool_calls is not a list")
        return AssistantMessage(
            content=content, tool_calls=tuple(_from_openai_call(c, i) for i, c in enumerate(calls))
        )
    raise ValueError(f"unknown message role {role!r}")


def _from_openai_call(data: Any, index: int) -> ToolCall:
    function = data.get("function") if isinstance(data, Mapping) else None
    if not isinstance(function, Mapping) or not isinstance(function.get("name"), str):
        raise ValueError("a tool call has no function name")
    raw = function.get("arguments")
    if isinstance(raw, Mapping):
        return ToolCall(id=str(data.get("id") or f"call_{index}"), name=function["name"], arguments=dict(raw))
    raw = raw if isinstance(raw, str) else json.dumps(raw)
    try:
        parsed = json.loads(raw)
    except ValueError:
        parsed = None
    arguments, error = (parsed, None) if isinstance(parsed, dict) else ({}, "arguments are not a JSON object")
    return ToolCall(
        id=str(data.get("id") or f"call_{index}"),
        name=function["name"],
        arguments=arguments,
        raw_arguments=raw,
        parse_error=error,
    )


def conversation_key(messages: Sequence[Message]) -> str:
    """A text that is equal for two message lists exactly when their OpenAI-style forms are equal."""
    return json.dumps([to_openai(m) for m in messages], sort_keys=True, ensure_ascii=False)


def is_customer(message: Message) -> bool:
    """A message from the customer (a user-role message that is not a ReAct tool result)."""
    return isinstance(message, UserMessage) and not message.content.startswith(APIRETURN)


def is_tool_result(message: Message) -> bool:
    """A tool result in the agent's view: a tool message (function calling) or an APIRETURN (ReAct)."""
    return isinstance(message, ToolMessage) or (
        isinstance(message, UserMessage) and message.content.startswith(APIRETURN)
    )


def is_stand_in(message: Message) -> bool:
    """A reply the agent wrote in place of a model reply that failed (no model output to learn from)."""
    return isinstance(message, AssistantMessage) and message.content.strip() in STAND_INS


def protocol_error(messages: Sequence[Message], index: int, tool_names: Sequence[str] = ()) -> str | None:
    """Why the assistant message `messages[index]` is a protocol error, or None when it is a good reply.

    `messages` is the agent's view around it (its tool results follow it); `tool_names` the tools the
    model was given, when known (function calling: a call of any other name is malformed). A ReAct APICALL
    is judged by its result, as the agent parsed it (FAILURE when it could not), not by the text: models
    often write more after the JSON, which the agent ignores. A reply that ended its branch under strict
    errors shows only in the node's notes (`ended_branch`).
    """
    message = messages[index]
    if not isinstance(message, AssistantMessage):
        return None
    text = message.content
    if APIRETURN in text:
        return "wrote a tool result itself"
    if any(mark in text for mark in ERROR_MARKS):
        return "an error stand-in (ERROR:/Error:)"
    if message.empty_tool_calls:
        return "an empty tool_calls list"
    after = _results(messages, index)
    if message.tool_calls:
        for call in message.tool_calls:
            if call.parse_error is not None:
                return "tool-call arguments are not a JSON object"
            if tool_names and call.name not in tool_names:
                return "an unknown tool"
        answered = {m.tool_call_id for m in after if isinstance(m, ToolMessage)}
        if any(call.id not in answered for call in message.tool_calls):
            return "a tool call with no result (the branch ended on it)"
    if any(FAILURE_MARK in m.content for m in after):
        return "the tool answered FAILURE (a malformed call)"
    return None


def strict_end(notes: Sequence[str], messages: Sequence[Message]) -> int | None:
    """The index in `messages` (a node's) of the reply that ended the branch under strict errors (the
    reference crashes there), going by the node's `notes`; None when no reply did."""
    if not any(STRICT_ERRORS_NOTE in note for note in notes):
        return None
    return next(
        (i for i in range(len(messages) - 1, -1, -1) if isinstance(messages[i], AssistantMessage)), None
    )


def _results(messages: Sequence[Message], index: int) -> list[Message]:
    """The tool results right after `messages[index]`."""
    found = []
    for message in messages[index + 1 :]:
        if not is_tool_result(message):
            break
        found.append(message)
    return found
