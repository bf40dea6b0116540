"""What goes through a local model's chat template and what comes back: josh's messages as the plain dicts
templates take (`to_template`), and tool calls read back from the generated text in the Hermes convention the
chat templates of Qwen, Hermes and josh's tiny test model use (`parse_hermes_tool_calls`): each
`<tool_call>{"name": ..., "arguments": {...}}</tool_call>` block that parses becomes a `ToolCall` (with a fresh
id) and leaves the text; a malformed block stays in the text, where the agent's protocol-error handling sees it.
"""

from __future__ import annotations

import json
import re
import uuid
from typing import Any

from josh.types import AssistantMessage, Message, SystemMessage, ToolCall, ToolMessage, UserMessage

TOOL_CALL_TAGS = ("<tool_call>", "</tool_call>")  # kept in the decoded text, even where they are special tokens
_TOOL_CALL_BLOCK = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)


def parse_hermes_tool_calls(text: str) -> tuple[str, list[ToolCall]]:
    """The text without its well-formed `<tool_call>{"name": ..., "arguments": {...}}</tool_call>` blocks, and
    those blocks as `ToolCall`s in order. A block is well-formed when it is a JSON object with a non-empty
    string `name` and `arguments` (or `parameters`) that are an object, a JSON string of one, or absent (`{}`).
    Malformed blocks (and an unclosed `<tool_call>`) stay in the text as written."""
    calls: list[ToolCall] = []

    def take(match: re.Match[str]) -> str:
        call = _hermes_call(match.group(1))
        if call is None:
            return match.group(0)
        calls.append(call)
        return ""

    rest = _TOOL_CALL_BLOCK.sub(take, text)
    return (rest.strip() if calls else text), calls


def _hermes_call(body: str) -> ToolCall | None:
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if not isinstance(value, dict):
        return None
    name = value.get("name")
    argument_keys = set(value) & {"arguments", "parameters"}
    if not isinstance(name, str) or not name.strip() or len(argument_keys) > 1:
        return None
    arguments = value[argument_keys.pop()] if argument_keys else {}
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments) if arguments.strip() else {}
        except (ValueError, RecursionError):
            return None
    if not isinstance(arguments, dict):
        return None
    return ToolCall(
        id=f"call_{uuid.uuid4().hex[:24]}",
        name=name,
        arguments=arguments,
        raw_arguments=json.dumps(arguments, ensure_ascii=False),
    )


def to_template(message: Message) -> dict[str, Any]:
    """One `josh.types` message as the plain dict chat templates take. Tool-call arguments are the parsed object
    (what HF templates expect), or the model's raw text when it did not parse."""
    if isinstance(message, SystemMessage | UserMessage):
        return {"role": message.role, "content": message.content}
    if isinstance(message, ToolMessage):
        return {
            "role": "tool",
            "tool_call_id": message.tool_call_id,
            "name": message.name,
            "content": message.content,
        }
    if isinstance(message, AssistantMessage):
        plain: dict[str, Any] = {"role": "assistant", "content": message.content}
        if message.tool_calls:
            plain["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {
                        "name": call.name,
                        "arguments": call.arguments
                        if call.parse_error is None or call.raw_arguments is None
                        else call.raw_arguments,
                    },
                }
                for call in message.tool_calls
            ]
        return plain
    raise TypeError(f"not a chat message: {type(message).__name__}")
