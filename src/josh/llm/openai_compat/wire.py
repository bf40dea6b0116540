"""The OpenAI wire format: josh's messages as chat message dicts (`to_wire`), tool calls read back from a
response (`parse_tool_call`), and a call's metadata as request headers. With the transport that sends them
(`josh.llm.openai_compat.model`), the only place that builds OpenAI wire dicts.
"""

from __future__ import annotations

import functools
import json
import re
import uuid
from collections.abc import Mapping
from typing import Any

from josh.types import (
    MAX_DEPTH,
    AssistantMessage,
    Message,
    SystemMessage,
    ToolCall,
    ToolMessage,
    UserMessage,
    bounded,
    json_type_name,
)

PROBE_TEXT = "Reply with OK."  # the one message of a preflight check (`OpenAIChatModel.check`)


def to_wire(message: Message) -> dict[str, Any]:
    """One `josh.types` message as an OpenAI chat message dict."""
    if isinstance(message, SystemMessage | UserMessage):
        return {"role": message.role, "content": message.content}
    if isinstance(message, ToolMessage):
        return {"role": "tool", "tool_call_id": message.tool_call_id, "content": message.content}
    if isinstance(message, AssistantMessage):
        # content is "" rather than null alongside tool calls: llama.cpp servers reject a null content.
        wire: dict[str, Any] = {"role": "assistant", "content": message.content}
        if message.tool_calls:
            wire["tool_calls"] = [_tool_call_to_wire(call) for call in message.tool_calls]
        return wire
    raise TypeError(f"not a chat message: {type(message).__name__}")


def _tool_call_to_wire(call: ToolCall) -> dict[str, Any]:
    # Arguments are replayed exactly as the model wrote them (as the reference does), parsed or not.
    if call.raw_arguments is not None:
        arguments = call.raw_arguments
    else:
        arguments = json.dumps(call.arguments, ensure_ascii=False)
    return {"id": call.id, "type": "function", "function": {"name": call.name, "arguments": arguments}}


def metadata_headers(metadata: Mapping[str, str] | None) -> dict[str, str]:
    """`{"task_id": "MUL0003"}` -> `{"X-Josh-Task-Id": "MUL0003"}`."""
    headers = {}
    for key, value in (metadata or {}).items():
        words = [word for word in re.split(r"[\s_\-]+", str(key)) if word]
        if words:
            headers["X-Josh-" + "-".join(word.capitalize() for word in words)] = str(value)
    return headers


def session_key(metadata: Mapping[str, str] | None) -> str | None:
    """The session a call belongs to (a JOSH tree, an eval conversation): `TASK/TRIAL` from its metadata;
    None when it names no task."""
    if not metadata or "task_id" not in metadata:
        return None
    return f"{metadata['task_id']}/{metadata.get('trial', '0')}"


# Where routers in front of a fleet look for a session to keep on one server: vllm-router's consistent_hash
# (and rendezvous / sticky policies) read `X-Session-ID` first; SGLang's router (sgl-model-gateway) reads
# `X-SMG-Routing-Key` with its consistent_hashing and manual policies.
SESSION_HEADERS = ("X-Session-ID", "X-SMG-Routing-Key")


def session_headers(metadata: Mapping[str, str] | None) -> dict[str, str]:
    """`{"task_id": "MUL0003", "trial": "1"}` -> the headers routers hash on, valued `MUL0003/1`."""
    key = session_key(metadata)
    return {} if key is None else dict.fromkeys(SESSION_HEADERS, key)


def call_headers(metadata: Mapping[str, str] | None) -> dict[str, str]:
    """A call's headers: `metadata_headers` and `session_headers` (the same few for every call of a
    conversation, so remembered)."""
    items = tuple((metadata or {}).items())
    try:
        return dict(_call_headers(items))
    except TypeError:  # a value that does not hash
        return _call_headers.__wrapped__(items)


@functools.lru_cache(maxsize=4096)
def _call_headers(items: tuple[tuple[str, str], ...]) -> dict[str, str]:
    return {**metadata_headers(dict(items)), **session_headers(dict(items))}


def _deeper_than(value: Any, limit: int) -> bool:
    """Whether containers in `value` nest more than `limit` levels (iterative: any depth is safe)."""
    stack = [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        if level > limit:
            return True
        stack.extend((child, level + 1) for child in children)
    return False


def _arguments(value: dict[str, Any]) -> dict[str, Any]:
    """Parsed arguments, cut at `MAX_DEPTH` levels when deeper (records and the cache must serialise them)."""
    if _deeper_than(value, MAX_DEPTH):
        cut = bounded(value)
        return cut if isinstance(cut, dict) else {}
    return value


def parse_tool_call(raw: Any) -> ToolCall:
    """A tool call of a response as a `ToolCall`; bad arguments are recorded in `parse_error`, never raised.

    `raw_arguments` keeps the text the server sent, verbatim, and is what later requests replay. Empty
    arguments (`""`, which some servers send for a tool without parameters) mean `{}` with no parse error;
    `raw_arguments` then stays `""` so that a strict check can still see them. Arguments nested deeper than
    `josh.types.MAX_DEPTH` are cut there (see `josh.types.bounded`); `raw_arguments` keeps them whole.
    """
    call_id = response_field(raw, "id")
    if not isinstance(call_id, str) or not call_id:
        call_id = f"call_{uuid.uuid4().hex[:24]}"
    function = response_field(raw, "function")
    name = response_field(function, "name")
    text = response_field(function, "arguments")
    if not isinstance(name, str) or not name:
        raw_text = text if isinstance(text, str) else None
        return ToolCall(
            id=call_id, name="", raw_arguments=raw_text, parse_error="the tool call names no function"
        )
    if isinstance(text, dict):  # a non-conforming server sent an object instead of a JSON string
        return ToolCall(id=call_id, name=name, arguments=_arguments(text))
    if text is None:
        return ToolCall(id=call_id, name=name)
    if isinstance(text, str) and not text.strip():
        return ToolCall(id=call_id, name=name, raw_arguments=text)
    if not isinstance(text, str):
        return ToolCall(
            id=call_id, name=name, raw_arguments=str(text), parse_error="arguments are not a JSON string"
        )
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        reason = f"arguments are not valid JSON ({exc.msg} at position {exc.pos})"
        return ToolCall(id=call_id, name=name, raw_arguments=text, parse_error=reason)
    except (ValueError, RecursionError):
        return ToolCall(id=call_id, name=name, raw_arguments=text, parse_error="arguments are not valid JSON")
    if not isinstance(value, dict):
        reason = f"arguments must be a JSON object, got {json_type_name(value)}"
        return ToolCall(id=call_id, name=name, raw_arguments=text, parse_error=reason)
    return ToolCall(id=call_id, name=name, arguments=_arguments(value), raw_arguments=text)


def response_field(obj: Any, name: str) -> Any:
    """An attribute of an SDK object, or a key of a dict; None when absent.

    The SDK builds responses without validation, so a non-conforming server can leave fields missing or raw.
    """
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)
