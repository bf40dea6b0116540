"""A model's context window and the size of a prompt in it, for the check before a run (a prompt that cannot
fit would fail every conversation mid-run).

Backends that can tell implement `context_window()` and `prompt_size(messages, tools)`: `OpenAIChatModel` asks
the server (llama.cpp's and vLLM's own routes), `HFChatModel` its config and tokenizer. Where a prompt cannot be
counted by the model's tokenizer, `estimate_prompt_size` gives a low estimate.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from josh.types import Message

CHARS_PER_TOKEN = 4  # English text and JSON in common tokenizers; small vocabularies need more tokens


@dataclass(frozen=True)
class ContextWindow:
    """How many tokens a request (prompt and reply) may hold, where the number comes from, and how to raise it."""

    tokens: int
    source: str  # e.g. "llama.cpp's context per slot"
    fix: str  # e.g. "restart llama.cpp's server with a larger -c / --ctx-size ..."


@dataclass(frozen=True)
class PromptSize:
    """A prompt's length in tokens and how it was found."""

    tokens: int
    counted: str  # e.g. "counted by the server's tokenizer and chat template"
    exact: bool = True  # False for an estimate


def estimate_prompt_size(
    messages: Sequence[Message], tools: Sequence[Mapping[str, Any]] | None = None
) -> PromptSize:
    """A low estimate of a prompt's tokens: its characters (contents and tool schemas as JSON) over
    `CHARS_PER_TOKEN`, chat-template markup left out."""
    chars = sum(len(message.content) for message in messages)
    if tools:
        chars += len(json.dumps(list(tools)))
    return PromptSize(
        chars // CHARS_PER_TOKEN, f"estimated at {CHARS_PER_TOKEN} characters a token", exact=False
    )
