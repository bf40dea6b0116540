"""What josh adapts to the OpenAI-compatible server it talks to, beyond the API both sides share.

- Message order: a server that refuses a request ending with assistant messages (llama.cpp's) gets them as
  one user message (`trailing_as_user`; `OpenAIChatModel` switches once, when refused, and records it);
- Text: lone surrogates a model sent, and the history replays, are replaced (`sendable`): the SDK encodes
  requests as UTF-8, which cannot hold them;
- The server's own routes beside `/v1`, asked best-effort, never an error: the context it serves
  (`served_context_window`: llama.cpp's `/props` and `/v1/models` `meta`, vLLM's `max_model_len`) and a
  prompt's tokens as its chat template and tokenizer count them (`served_prompt_size`: vLLM's `/tokenize`,
  llama.cpp's `/apply-template` then `/tokenize`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal

from josh.llm.context import ContextWindow, PromptSize
from josh.types import clean_text

TrailingAssistant = Literal["keep", "as_user"]
GetJson = Callable[[str], Awaitable[Any]]  # a GET of a URL: its JSON, or None on any failure
PostJson = Callable[[str, dict[str, Any]], Awaitable[Any]]  # a POST of a JSON body: its JSON, or None
_LLAMA_CPP_FIX = (
    "restart llama.cpp's server with a larger -c / --ctx-size (shared by its --parallel slots: each gets "
    "ctx-size / parallel) or use a model with a longer context"
)
_VLLM_FIX = "restart vLLM with a larger --max-model-len, or use a model with a longer context"


def trailing_as_user(wire: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Wire messages with the trailing assistant messages sent as ONE user message (their contents joined by
    a newline), for servers that refuse to end a request with assistant messages.

    Trailing means after the last message that is not a plain assistant message; an assistant message with
    tool calls is never folded (its calls would be lost). Without trailing assistant messages, `wire` as is.
    """
    cut = len(wire)
    while cut > 0 and wire[cut - 1].get("role") == "assistant" and not wire[cut - 1].get("tool_calls"):
        cut -= 1
    if cut == len(wire):
        return list(wire)
    content = "\n".join(str(message.get("content") or "") for message in wire[cut:])
    return [*wire[:cut], {"role": "user", "content": content}]


def sendable(value: Any) -> Any:
    """`value` with lone surrogates replaced in every string: the SDK encodes requests as UTF-8, which cannot
    hold them (a model may have sent one, and the history replays it)."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {key: sendable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [sendable(item) for item in value]
    return value


def server_root(base_url: str) -> str:
    """The server's own routes (llama.cpp's `/props`, vLLM's `/tokenize`) sit beside `/v1`."""
    return base_url[: -len("/v1")] if base_url.endswith("/v1") else base_url


async def served_context_window(get_json: GetJson, base_url: str, model: str) -> ContextWindow | None:
    """The context the server at `base_url` gives `model`, where it says: llama.cpp's context per slot
    (`/props` `default_generation_settings.n_ctx`, else its `/v1/models` `meta.n_ctx`, else the model's
    `n_ctx_train`), vLLM's `max_model_len` (`/v1/models`). None when the server does not say (OpenAI) or
    cannot be asked: this is a best-effort look, never an error."""
    listing = await get_json(f"{base_url}/models")
    entries = listing.get("data") if isinstance(listing, Mapping) else None
    if not isinstance(entries, list):
        return None
    entries = [entry for entry in entries if isinstance(entry, Mapping)]
    named = [entry for entry in entries if entry.get("id") == model]
    entry = named[0] if named else entries[0] if len(entries) == 1 else None
    if entry is None:
        return None
    meta = entry.get("meta")
    if isinstance(meta, Mapping):  # llama.cpp's server
        props = await get_json(f"{server_root(base_url)}/props")
        settings = props.get("default_generation_settings") if isinstance(props, Mapping) else None
        found = [
            (_count(settings.get("n_ctx") if isinstance(settings, Mapping) else None), "per slot"),
            (_count(meta.get("n_ctx")), "per slot"),
            (_count(meta.get("n_ctx_train")), "the model's training context"),
        ]
        for tokens, source in found:
            if tokens is not None:
                return ContextWindow(tokens, f"llama.cpp, {source}", _LLAMA_CPP_FIX)
        return None
    tokens = _count(entry.get("max_model_len"))
    if tokens is not None:  # vLLM
        return ContextWindow(tokens, "vLLM's max_model_len", _VLLM_FIX)
    return None


async def served_prompt_size(
    post_json: PostJson,
    base_url: str,
    model: str,
    wire: list[dict[str, Any]],
    tools: Sequence[Mapping[str, Any]] | None,
) -> PromptSize | None:
    """The tokens of a request's prompt (`wire`, as it would be sent) as the server at `base_url` counts
    them: its chat template applied, then its tokenizer (vLLM: `/tokenize` with the messages; llama.cpp:
    `/apply-template`, then `/tokenize`). None when the server has no such routes."""
    chat: dict[str, Any] = {"messages": wire}
    if tools:
        chat["tools"] = [dict(tool) for tool in tools]
    counted = "counted by the server's tokenizer and chat template"
    root = server_root(base_url)
    vllm = await post_json(
        f"{root}/tokenize", {"model": model, **chat, "add_generation_prompt": True}
    )
    tokens = _count(vllm.get("count")) if isinstance(vllm, Mapping) else None
    if tokens is not None:
        return PromptSize(tokens, counted)
    rendered = await post_json(f"{root}/apply-template", chat)
    prompt = rendered.get("prompt") if isinstance(rendered, Mapping) else None
    if isinstance(prompt, str) and prompt:
        ids = await post_json(f"{root}/tokenize", {"content": prompt, "add_special": True})
        listed = ids.get("tokens") if isinstance(ids, Mapping) else None
        if isinstance(listed, list) and listed:
            return PromptSize(len(listed), counted)
    return None


def _count(value: Any) -> int | None:
    """A positive token count the server sent, else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None
