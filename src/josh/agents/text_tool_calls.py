"""Tool calls a model wrote as JSON text instead of native `tool_calls` (common with small open models).

Detection is conservative: the whole message, once a code fence, `<tool_call>` tags or a known prefix are
taken off, must be one JSON call object (or a list of them). A call object has a string `name` and
`arguments` (or `parameters`) that are an object or a JSON string of one, and nothing else but an optional
`"type": "function"` and `id`; the OpenAI wire form `{"type": "function", "function": {...}}` is accepted too.
Anything else (speech with braces, JSON about something else) is not a tool call.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

TEXT_TOOL_CALL_NOTE = "tool call written as text"
# How the note ends when the call was spoken to the customer (the paper's protocol), not run.
SPOKEN_NOTE_END = "(spoken to the customer, as the paper does)"
_FENCE = re.compile(r"```[A-Za-z_]*[ \t]*\n?(.*?)\n?[ \t]*```", re.DOTALL)
_TAGGED = re.compile(r"\s*<tool_call>(.*?)</tool_call>\s*", re.DOTALL)
_PREFIXES = ("<|python_tag|>", "[TOOL_CALLS]")
_EXTRA_KEYS = {"type", "id"}


@dataclass(frozen=True)
class TextToolCall:
    """One tool call found in a message's text."""

    name: str
    arguments: dict[str, Any]
    raw_arguments: str  # the arguments as JSON text, as a native call carries them


def find_text_tool_calls(content: str) -> list[TextToolCall]:
    """The tool calls written as the whole of `content`, in order; [] when it is anything else."""
    bodies = _bodies(content)
    calls: list[TextToolCall] = []
    for body in bodies:
        try:
            value = json.loads(body)
        except (ValueError, RecursionError):
            return []
        items = value if isinstance(value, list) else [value]
        if not items:
            return []
        for item in items:
            call = _call(item)
            if call is None:
                return []
            calls.append(call)
    return calls


def _bodies(content: str) -> list[str]:
    text = content.strip()
    fenced = _FENCE.fullmatch(text)
    if fenced:
        text = fenced.group(1).strip()
    for prefix in _PREFIXES:
        if text.startswith(prefix):
            text = text[len(prefix) :].strip()
    if text.startswith("<tool_call>"):
        if not re.fullmatch(rf"(?:{_TAGGED.pattern})+", text, re.DOTALL):
            return []
        return [body.strip() for body in _TAGGED.findall(text)]
    return [text] if text.startswith(("{", "[")) else []


def _call(item: Any) -> TextToolCall | None:
    if not isinstance(item, dict):
        return None
    if isinstance(item.get("function"), dict) and set(item) <= {"function", *_EXTRA_KEYS}:
        if item.get("type", "function") != "function":
            return None
        item = item["function"]
    keys = set(item)
    argument_keys = keys & {"arguments", "parameters"}
    if "name" not in keys or len(argument_keys) != 1 or keys - {"name", *argument_keys, *_EXTRA_KEYS}:
        return None
    if item.get("type", "function") != "function":
        return None
    name, arguments = item["name"], item[argument_keys.pop()]
    if not isinstance(name, str) or not name.strip():
        return None
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except (ValueError, RecursionError):
            return None
    if not isinstance(arguments, dict):
        return None
    return TextToolCall(
        name=name, arguments=arguments, raw_arguments=json.dumps(arguments, ensure_ascii=False)
    )
