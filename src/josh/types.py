"""Shared types: chat messages, tool calls and token usage. Imports nothing else from josh.

Messages are a union distinguished by `role` (pydantic v2, frozen, extra fields forbidden), so beams can
share prefixes safely and saved records round-trip exactly. OpenAI wire-format dicts exist only in `josh.llm`.
"""

from __future__ import annotations

import functools
import json
import re
import reprlib
from collections.abc import Iterable
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    TypeAdapter,
)

# A goal's key in records may be its tool's name followed by this and an id, where a task has several goals
# of one tool (tau2's actions): summaries count the goal under the tool named before it.
GOAL_KEY_SEPARATOR = "#"


def goal_tool(key: str) -> str:
    """The tool a goal key names: `book_reservation#3_1` -> `book_reservation`; a plain name is itself."""
    return key.split(GOAL_KEY_SEPARATOR, 1)[0]


# A reward or score in a saved record: a number from 0 to 1 (not a bool, not text: `true` is no reward, and
# 5.0 is a damaged record rather than a perfect score).
Reward = Annotated[StrictFloat, Field(ge=0.0, le=1.0)]


class Record(BaseModel):
    """Base of every saved model: immutable, and an unknown field is an error rather than silently dropped."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def omitted_when_empty(value: Any) -> bool:
    """For `Field(exclude_if=...)`: a field a saved format gained later, which most records never use, is
    left out of dumps while empty (False, [], None), so files that never needed it stay as they were. (A
    pydantic field option, not a Python serializer around the model: dumping a tree is ~4x quicker.)"""
    return not value


class Usage(Record):
    """Tokens and cost of one model call (or a sum of them).

    `cost` is USD, or None when the model is unpriced (a local model josh has no price for): unknown, not free.
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = 0.0
    cached: StrictBool = False  # served from the on-disk response cache: no tokens were paid for

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def __add__(self, other: Usage) -> Usage:
        """The sum of two usages. The cost is None (unpriced) when either side is unpriced: a sum that left
        out an unknown price would understate what was spent. `cached` is not carried into a sum."""
        total_cost = None if self.cost is None or other.cost is None else self.cost + other.cost
        return Usage(
            prompt_tokens=self.prompt_tokens + other.prompt_tokens,
            completion_tokens=self.completion_tokens + other.completion_tokens,
            cost=total_cost,
        )

    @staticmethod
    def total(items: Iterable[Usage | ModelCall]) -> Usage:
        """The sum of usages (or of calls' token counts and costs) as adding them one by one gives, without a
        model for each step: a ledger sums every call of a tree, and each call's replies."""
        prompt = completion = 0
        cost: float | None = 0.0
        for item in items:
            prompt += item.prompt_tokens
            completion += item.completion_tokens
            cost = None if cost is None or item.cost is None else cost + item.cost
        return Usage(prompt_tokens=prompt, completion_tokens=completion, cost=cost)


class ModelCall(Record):
    """One `chat()` call of a model in a conversation, whatever came of it: the ledger of what was billed.

    On success the summed usage of its replies (`cached` when served from the response cache); on failure
    `error` holds a one-line message and the token counts are 0. `cost` None means unpriced.
    """

    role: str  # "agent" or "user"
    n: int = 1  # completions asked for
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float | None = None
    cached: StrictBool = False
    latency_s: float | None = None  # wall time of the call, retries and waits included
    error: str | None = None


class ToolCall(Record):
    """A tool call a model asked for. `parse_error` is set when its arguments were not a JSON object."""

    id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    raw_arguments: str | None = None  # the text the model sent, replayed verbatim in later prompts
    parse_error: str | None = None


class SystemMessage(Record):
    role: Literal["system"] = "system"
    content: str


@functools.lru_cache(maxsize=256)
def system_message(content: str) -> SystemMessage:
    """The `SystemMessage` of `content`, one object for each text: an agent sends its system prompt with
    every call, and clients remember what they made of a message by its identity
    (`josh.llm.openai_compat.wire_memo`)."""
    return SystemMessage(content=content)


class UserMessage(Record):
    role: Literal["user"] = "user"
    content: str


class AssistantMessage(Record):
    role: Literal["assistant"] = "assistant"
    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    usage: Usage | None = None
    latency_s: float | None = None
    model: str | None = None
    # The server sent `tool_calls: []` (which crashes the paper's reference). Left out of dumps when False, so
    # records do not grow a field on every message.
    empty_tool_calls: StrictBool = Field(default=False, exclude_if=omitted_when_empty)


class ToolMessage(Record):
    role: Literal["tool"] = "tool"
    tool_call_id: str
    name: str = ""
    content: str
    error: str | None = None


Message = Annotated[SystemMessage | UserMessage | AssistantMessage | ToolMessage, Field(discriminator="role")]
MESSAGE_ADAPTER: TypeAdapter[Message] = TypeAdapter(Message)
MESSAGES_ADAPTER: TypeAdapter[list[Message]] = TypeAdapter(list[Message])


def message_from_dict(data: dict[str, Any]) -> Message:
    """Parse a saved message (`{"role": ..., ...}`)."""
    return MESSAGE_ADAPTER.validate_python(data)


# ---------------------------------------------------------------------------------------------- JSON safety
# A model can send anything: text with lone surrogates (valid in a JSON escape, not in UTF-8), or arguments
# nested hundreds deep (deeper than pydantic or a reader will go). Records must still serialise, so values
# that end up in them pass through `bounded`, and lines are written with `dumps_line`.

MAX_DEPTH = 32
TOO_DEEP = f"<cut: nested deeper than {MAX_DEPTH} levels>"
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxstring, _REPR.maxother = 3, 200, 200


def json_type_name(value: Any) -> str:
    """What a parsed JSON value is, for messages: "an array", "a string", "a boolean", "a number", "null"."""
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    return "null" if value is None else type(value).__name__


def clean_text(text: str) -> str:
    """`text` with every lone surrogate (which UTF-8 cannot encode) replaced by U+FFFD."""
    if text.isascii():  # known without reading the text
        return text
    try:
        text.encode("utf-8")  # a C loop; the search below is a regex's, ~10x slower on a 50 KB record
    except UnicodeEncodeError:
        return _LONE_SURROGATE.sub("\ufffd", text)
    return text


def bounded(value: Any, max_depth: int = MAX_DEPTH) -> Any:
    """A JSON-ready copy of `value`: containers deeper than `max_depth` become a marker string, strings lose
    their lone surrogates, tuples and sets become lists, subclasses of str, int, float, dict and list their
    plain values, integers too long to print a marker, other objects their (short) repr. Never raises."""
    kind = type(value)  # not isinstance(): a hostile `__class__` can raise, or lie
    if value is None or kind is bool or kind is float:
        return value
    if issubclass(kind, float):
        return float.__float__(value)
    if issubclass(kind, int):  # base methods: a subclass's own __eq__ or __repr__ may raise
        return _bounded_int(int.__int__(value))
    if issubclass(kind, str):
        return clean_text(str.__str__(value))
    if issubclass(kind, dict | list | tuple | set | frozenset):
        if max_depth <= 0:
            return TOO_DEEP
        if issubclass(kind, dict):
            return {_bounded_key(k): bounded(v, max_depth - 1) for k, v in dict.items(value)}
        base = next(b for b in (list, tuple, set, frozenset) if issubclass(kind, b))
        return [bounded(v, max_depth - 1) for v in base.__iter__(value)]
    try:
        return clean_text(_REPR.repr(value))
    except Exception:  # a hostile __repr__
        return f"<{kind.__name__}>"


def _bounded_int(number: int) -> int | str:
    # Python refuses to print integers of more than `sys.get_int_max_str_digits()` digits (4,300 by default).
    if number.bit_length() < 13_000:  # under 3,914 digits
        return number
    try:
        int.__repr__(number)
    except ValueError:
        return f"<int of {number.bit_length():,} bits>"
    return number


def _bounded_key(key: Any) -> str:
    plain = bounded(key, 1)
    if type(plain) is str:
        return plain
    try:
        return clean_text(str(plain))
    except Exception:
        return f"<{type(key).__name__}>"


def dumps_line(obj: Any) -> str:
    """One JSON line (no newline) that always encodes as UTF-8: lone surrogates are replaced and anything
    too deep or not JSON is made safe with `bounded` first. Never raises."""
    try:
        text = json.dumps(obj, ensure_ascii=False, default=str)
    except Exception:  # too deep, an integer too long to print, or a `default=str` that raised
        text = json.dumps(bounded(obj), ensure_ascii=False, default=str)
    return clean_text(text)
