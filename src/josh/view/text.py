"""Model text as HTML: escaped, cleaned of lone surrogates, cut short with a "show all" toggle when long.

Everything a record holds may be hostile (a model can write `<script>` or a megabyte of text), so every value
goes through `esc` or `text_block`; nothing from a record reaches the page unescaped.
"""

from __future__ import annotations

import html
import json
import re
from typing import Any

from josh.types import AssistantMessage, Message, ToolMessage, UserMessage, bounded, clean_text

SHOWN_CHARS = 2_000  # what a long text shows before "show all"
MAX_CHARS = 200_000  # what "show all" shows at most (the run file holds the rest)
PREVIEW_CHARS = 160  # a one-line preview in a tree node
NOTE_CHARS = 1_000  # a note or an error message on one line
_SPACES = re.compile(r"\s+")

# How a turn is drawn: who speaks, in the agent's own view of the conversation.
CUSTOMER, AGENT, CALL, TOOL, SYSTEM = "customer", "agent", "call", "tool", "system"
KIND_LABELS = {
    CUSTOMER: "customer",
    AGENT: "agent",
    CALL: "agent → tool",
    TOOL: "tool result",
    SYSTEM: "system",
}
KIND_MARKS = {CUSTOMER: "C", AGENT: "A", CALL: "→", TOOL: "T", SYSTEM: "S"}
REACT_RESULT = "APIRETURN "  # the ReAct agent shows a tool result as a user message with this prefix
REACT_CALL = "APICALL"


def esc(value: Any) -> str:
    """Any value as HTML text (quotes escaped too, so it is safe in an attribute)."""
    text = value if isinstance(value, str) else str(value)
    return html.escape(clean_text(text), quote=True)


def esc_text(text: str) -> str:
    """Text as HTML element content (quotes left alone: only attributes need them escaped)."""
    return html.escape(clean_text(text), quote=False)


def as_json(value: Any) -> str:
    """A value (tool arguments, a result) as indented JSON text, whatever it holds."""
    if isinstance(value, str):
        return clean_text(value)
    return clean_text(json.dumps(bounded(value), ensure_ascii=False, indent=2, default=str))


def preview(text: str, limit: int = PREVIEW_CHARS) -> str:
    """The start of `text` on one line (runs of whitespace made one space), with "…" when cut."""
    flat = _SPACES.sub(" ", clean_text(text[: limit * 4])).strip()
    return flat if len(flat) <= limit and len(text) <= limit * 4 else flat[:limit].rstrip() + "…"


def text_block(text: str, css: str = "text") -> str:
    """A pre-formatted block of `text`. Past SHOWN_CHARS it shows the start and a "show all" toggle (a
    `<details>`: no script needed) that opens the text up to MAX_CHARS, saying how much the view leaves out."""
    text = clean_text(text)
    if len(text) <= SHOWN_CHARS:
        return f'<pre class="{css}">{esc_text(text)}</pre>'
    full = text[:MAX_CHARS]
    cut = (
        f'<p class="cut">cut at {MAX_CHARS:,} of {len(text):,} characters; the run file holds all of it</p>'
        if len(text) > MAX_CHARS
        else ""
    )
    return (
        f'<details class="long"><summary><pre class="{css}">{esc_text(text[:SHOWN_CHARS])}…</pre>'
        f'<span class="toggle" data-chars="{len(text)}"><span class="show">show all {len(text):,} characters</span>'
        '<span class="hide">show less</span></span></summary>'
        f'<pre class="{css}">{esc_text(full)}</pre>{cut}</details>'
    )


def turn_kind(message: Message) -> str:
    """Who a message of the agent's view is from: the customer, the agent (speaking or calling a tool), a
    tool result (a tool message, or the ReAct agent's APIRETURN user message), or the system prompt."""
    if isinstance(message, ToolMessage):
        return TOOL
    if isinstance(message, UserMessage):
        return TOOL if message.content.startswith(REACT_RESULT) else CUSTOMER
    if isinstance(message, AssistantMessage):
        return CALL if message.tool_calls or REACT_CALL in message.content else AGENT
    return SYSTEM


def turn_preview(message: Message) -> str:
    """One line telling what a message says: a call's name and arguments, a result, or the spoken text.
    A ReAct message shows its last command (APICALL or SPEAK) rather than the PLAN before it."""
    if isinstance(message, AssistantMessage) and message.tool_calls:
        calls = ", ".join(f"{c.name}({as_json(c.arguments)})" for c in message.tool_calls)
        return preview(f"{message.content} {calls}".strip())
    content = message.content
    if isinstance(message, UserMessage) and content.startswith(REACT_RESULT):
        content = content[len(REACT_RESULT) :]
    elif isinstance(message, AssistantMessage):
        start = max(content.rfind(REACT_CALL), content.rfind("SPEAK"))
        if start > 0:
            content = content[start:]
    return preview(content) or "(empty)"


def call_html(name: Any, arguments: Any, result: Any, rewards: list[str], by_customer: bool = False) -> str:
    """One tool call with its result, starred with the goals it met. `by_customer`: a call the customer made
    on its own tools (tau2's telecom customer on its phone), which the agent never sees."""
    stars = "".join(f'<span class="reward">★ {esc(goal)}</span>' for goal in rewards)
    classes = "msg tool-call" + (" customer-call" if by_customer else "") + (" rewarded" if rewards else "")
    who = "customer's own tool call (the agent does not see it)" if by_customer else "tool call"
    return (
        f'<div class="{classes}">'
        f'<div class="who">{esc(who)} <code>{esc(as_json(name))}</code> {stars}</div>'
        f"{text_block(as_json(arguments), 'args')}"
        f'<div class="who">result</div>{text_block(as_json(result))}</div>'
    )


def customer_calls_html(messages: list[Message]) -> str:
    """The customer's own tool traffic of one turn (its calls, then their results) as calls with results."""
    results = {m.tool_call_id: m for m in messages if isinstance(m, ToolMessage)}
    parts = []
    for message in messages:
        if isinstance(message, AssistantMessage):
            for call in message.tool_calls:
                answer = results.pop(call.id, None)
                result = "(no result)" if answer is None else answer.error or answer.content
                parts.append(call_html(call.name, call.arguments, result, [], by_customer=True))
    parts += [call_html(m.name, "", m.error or m.content, [], by_customer=True) for m in results.values()]
    return "".join(parts)


def message_html(message: Message) -> str:
    """One message in full: who sent it, its text, its tool calls with their arguments, any error."""
    kind = turn_kind(message)
    parts = [f'<div class="msg {kind}"><div class="who">{esc(KIND_LABELS[kind])}']
    if isinstance(message, ToolMessage) and message.name:
        parts.append(f" <code>{esc(message.name)}</code>")
    parts.append("</div>")
    if message.content or not (isinstance(message, AssistantMessage) and message.tool_calls):
        parts.append(text_block(message.content))
    if isinstance(message, AssistantMessage):
        for call in message.tool_calls:
            parts.append(f'<div class="call"><code>{esc(call.name)}</code>')
            parts.append(text_block(as_json(call.arguments), "args"))
            if call.parse_error:
                parts.append(
                    f'<p class="error">arguments not understood: {esc(preview(call.parse_error, NOTE_CHARS))}</p>'
                )
            parts.append("</div>")
        if message.empty_tool_calls:
            parts.append('<p class="error">the server sent an empty tool_calls list</p>')
    if isinstance(message, ToolMessage) and message.error:
        parts.append(f'<p class="error">{esc(preview(message.error, NOTE_CHARS))}</p>')
    parts.append("</div>")
    return "".join(parts)
