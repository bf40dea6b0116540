"""The chat model of any OpenAI-compatible server (OpenAI, vLLM, llama.cpp, the josh mock) via the openai SDK.

This is the only module that builds OpenAI wire dicts. Retries are ours (the SDK's `max_retries` is 0, so the
two loops never multiply), every provider error is mapped to the `LLMError` tree by `classify`, and the API
key never appears in a repr, an error message or a log line. An optional `EndpointBreaker` shared by the
models of one endpoint pauses every request during an outage (see `josh.llm.breaker`).

Message order: requests keep the caller's order (the paper's ReAct agent may end a request with one or two
assistant messages). A server that refuses trailing assistant messages (llama.cpp: "Cannot have 2 or more
assistant messages at the end of the list") switches that model instance, once, to sending them as one user
message; `OpenAIChatModel.adaptations` says so.

Usage of a request with `n` choices is put entirely on the first reply (the others get zero usage): the
server reports one total, and this keeps sums over replies exact.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
import socket
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Literal, TypeGuard, TypeVar

import httpx
import openai

from josh.llm.base import (
    ContextLengthError,
    EndpointError,
    FatalLLMError,
    LLMError,
    RetryableLLMError,
    UnreachableError,
)
from josh.llm.breaker import EndpointBreaker
from josh.llm.cache import ResponseCache
from josh.llm.context import ContextWindow, PromptSize
from josh.llm.pricing import cost
from josh.llm.retry import RetryPolicy, retry_after_seconds
from josh.types import (
    MAX_DEPTH,
    AssistantMessage,
    Message,
    SystemMessage,
    ToolCall,
    ToolMessage,
    Usage,
    UserMessage,
    bounded,
    clean_text,
    json_type_name,
)

log = logging.getLogger(__name__)

DEFAULT_API_KEY = "EMPTY"  # local servers (vLLM, llama.cpp) accept any key; the SDK refuses none
CHECK_TIMEOUT = 15.0  # seconds a preflight `check` waits at most
_DETAIL_CHARS = 300
_MASK = "***"
# Shorter keys ("x", "EMPTY", "sk-1") are the dummies local servers accept, not secrets: masking them would
# garble every message that contains their letters.
_MIN_SECRET_CHARS = 8
_LLAMA_CPP_FIX = (
    "restart llama.cpp's server with a larger -c / --ctx-size (shared by its --parallel slots: each gets "
    "ctx-size / parallel) or use a model with a longer context"
)
_VLLM_FIX = "restart vLLM with a larger --max-model-len, or use a model with a longer context"
_CONTEXT_LENGTH = re.compile(
    r"context[ _]length|context window|context size|maximum context|too many tokens|prompt is too long",
    re.I,
)
# A server refusing a request that ends with assistant messages. llama.cpp's server says "Cannot have 2 or
# more assistant messages at the end of the list." and, with thinking templates, "Assistant response prefill
# is incompatible with enable_thinking." (one trailing assistant message is a prefill of its answer).
_TRAILING_ASSISTANT_REFUSAL = re.compile(
    r"assistant messages? at the end|assistant (?:response )?prefill|prefill is (?:incompatible|not supported)",
    re.I,
)
# Any refusal of the order of the messages, for the hint of a 400.
_MESSAGE_ORDER = re.compile(
    _TRAILING_ASSISTANT_REFUSAL.pattern + r"|roles must alternate|must alternate (?:between )?user",
    re.I,
)
# Request parameters a 400 may name; only a named one is suggested as the cause.
_PARAMETERS = re.compile(
    r"\b(temperature|max_tokens|max_completion_tokens|tools|tool_choice|n|seed|top_p)\b", re.I
)
TrailingAssistant = Literal["keep", "as_user"]
_T = TypeVar("_T")


class _MalformedResponseError(Exception):
    """The server answered with a success status but not with what was asked for."""

    def __init__(self, message: str, expected: str = "a chat completion") -> None:
        super().__init__(message)
        self.expected = expected


# Exceptions a request can end in that `classify` understands; anything else is a bug and propagates as is.
# The SDK raises JSONDecodeError itself when a body labelled JSON does not parse.
_REQUEST_ERRORS = (openai.OpenAIError, _MalformedResponseError, json.JSONDecodeError, UnicodeDecodeError)


class _Secret:
    """A string that never shows itself."""

    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        self.value = value

    def __repr__(self) -> str:
        return repr(_MASK)

    __str__ = __repr__


# ---------------------------------------------------------------------------------------------- wire format


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


def _sendable(value: Any) -> Any:
    """`value` with lone surrogates replaced in every string: the SDK encodes requests as UTF-8, which cannot
    hold them (a model may have sent one, and the history replays it)."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, dict):
        return {key: _sendable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_sendable(item) for item in value]
    return value


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
    call_id = _field(raw, "id")
    if not isinstance(call_id, str) or not call_id:
        call_id = f"call_{uuid.uuid4().hex[:24]}"
    function = _field(raw, "function")
    name = _field(function, "name")
    text = _field(function, "arguments")
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


def _field(obj: Any, name: str) -> Any:
    """An attribute of an SDK object, or a key of a dict; None when absent.

    The SDK builds responses without validation, so a non-conforming server can leave fields missing or raw.
    """
    if obj is None:
        return None
    if isinstance(obj, Mapping):
        return obj.get(name)
    return getattr(obj, name, None)


# ---------------------------------------------------------------------------------------------- errors


def classify(
    exc: BaseException, *, base_url: str = "", model: str = "", api_key: str | None = None
) -> LLMError:
    """Map an SDK (or response-parsing) exception to `RetryableLLMError` or `FatalLLMError`.

    Failures that concern the endpoint as a whole, whatever the conversation (HTTP 401, 403, 404, a 429 for
    exhausted quota), are `EndpointError`; the other fatal ones (context too long, another 400) concern one
    conversation. The message names the endpoint and the likely fix; `api_key`, when it can be a secret, is
    masked out of what the server or the network said (never out of josh's own words).
    """
    if isinstance(exc, LLMError):
        return exc
    error_type, message = _classify(exc, base_url.rstrip("/"), model, lambda text: _mask(text, api_key))
    return error_type(message)


def _classify(
    exc: BaseException, base_url: str, model: str, foreign: Callable[[str], str]
) -> tuple[type[LLMError], str]:
    """The error type and message; `foreign` cleans the text that came from elsewhere (server, network)."""
    endpoint = f"the endpoint {base_url}" if base_url else "the endpoint"
    server = base_url or "the server"
    model_name = repr(model) if model else "the model"
    if isinstance(exc, openai.APITimeoutError):
        return (
            RetryableLLMError,
            f"{endpoint} did not answer in time (timeout); it may be overloaded, or the timeout is too short",
        )
    if isinstance(exc, openai.APIConnectionError):
        reason, connecting = _connection_reason(exc)
        reason = foreign(reason)
        if connecting:
            return (
                RetryableLLMError,
                f"cannot reach {server} ({reason}); is the server running? check --base-url",
            )
        return RetryableLLMError, f"the connection to {server} failed ({reason})"
    if isinstance(exc, openai.APIStatusError):
        return _classify_status(exc, endpoint, model_name, foreign)
    if isinstance(exc, openai.APIResponseValidationError | _MalformedResponseError | ValueError):
        detail = foreign(_truncate(str(exc))) or type(exc).__name__
        expected = getattr(exc, "expected", "a chat completion")
        return RetryableLLMError, f"{endpoint} sent a response that is not {expected} ({detail})"
    detail = foreign(_truncate(str(exc)))
    return FatalLLMError, f"unexpected error from {endpoint}: {type(exc).__name__}: {detail}"


def _classify_status(
    exc: openai.APIStatusError, endpoint: str, model_name: str, foreign: Callable[[str], str]
) -> tuple[type[LLMError], str]:
    status = exc.status_code
    detail = foreign(_status_detail(exc))
    if status == 401:
        return EndpointError, (
            f"{endpoint} rejected the API key (HTTP 401); check OPENAI_API_KEY or --api-key-env"
        )
    if status == 403:
        return EndpointError, (
            f"{endpoint} refused access to {model_name} (HTTP 403: {detail}); "
            "check that the API key may use this model"
        )
    if status == 404:
        return EndpointError, (
            f"{endpoint} has no model {model_name} or no chat completions route (HTTP 404: {detail}); "
            "check the model name and --base-url (it usually ends in /v1)"
        )
    if status == 400 and (exc.code == "context_length_exceeded" or _CONTEXT_LENGTH.search(detail)):
        return ContextLengthError, (
            f"the conversation is longer than the context window of {model_name} (HTTP 400: {detail}); "
            "give the server a larger context (llama.cpp: -c / --ctx-size; vLLM: --max-model-len), use a "
            "model with a longer one, or shorten the conversation (fewer turns, smaller max_tokens)"
        )
    if status == 429:
        if exc.code == "insufficient_quota" or "current quota" in detail.lower():
            return EndpointError, (
                f"{endpoint} says the account has run out of quota (HTTP 429: {detail}); check its billing"
            )
        return RetryableLLMError, f"{endpoint} is rate limiting requests (HTTP 429: {detail})"
    if status in (408, 409) or status >= 500:
        return RetryableLLMError, f"{endpoint} failed with HTTP {status} ({detail})"
    if _MESSAGE_ORDER.search(detail):
        return FatalLLMError, f"{endpoint} refused the order of the messages (HTTP {status}: {detail})"
    named = list(dict.fromkeys(match.lower() for match in _PARAMETERS.findall(detail)))
    if named:
        return FatalLLMError, (
            f"{endpoint} rejected the request (HTTP {status}: {detail}); "
            f"check the model's supported parameters ({', '.join(named)})"
        )
    return FatalLLMError, f"{endpoint} rejected the request (HTTP {status}: {detail})"


def is_unavailable(exc: BaseException) -> bool:
    """Whether a request failed because the endpoint was unavailable: no connection, a timeout, HTTP 5xx.

    These are what a circuit breaker counts; a rate limit or any other 4xx is an answer.
    """
    if isinstance(exc, openai.APIConnectionError):  # APITimeoutError included
        return True
    return isinstance(exc, openai.APIStatusError) and exc.status_code >= 500


def _cannot_connect(exc: BaseException) -> bool:
    """A connection that could not be made at all (refused, unknown host, TLS): nothing to retry for."""
    if not isinstance(exc, openai.APIConnectionError) or isinstance(exc, openai.APITimeoutError):
        return False
    return _connection_reason(exc)[1]


def _refuses_trailing_assistant(exc: BaseException) -> TypeGuard[openai.APIStatusError]:
    return (
        isinstance(exc, openai.APIStatusError)
        and exc.status_code in (400, 422)
        and bool(_TRAILING_ASSISTANT_REFUSAL.search(_status_detail(exc)))
    )


def _status_detail(exc: openai.APIStatusError) -> str:
    body = exc.body
    error = body.get("error", body) if isinstance(body, Mapping) else body
    if isinstance(error, Mapping):
        error = error.get("message") or error.get("detail") or error
    text = error if isinstance(error, str) and error.strip() else exc.message
    return _truncate(text)


def _connection_reason(exc: BaseException) -> tuple[str, bool]:
    """A short reason for a connection failure, and whether it happened while connecting."""
    connecting = False
    fallback = ""
    for error in _exception_chain(exc):
        if isinstance(error, ConnectionRefusedError):
            return "connection refused", True
        if isinstance(error, socket.gaierror):
            return "host name not found", True
        if isinstance(error, ssl.SSLError):
            return f"TLS error: {error}", True
        if type(error).__name__ == "ConnectError":
            connecting = True
        if not isinstance(error, openai.OpenAIError) and str(error):
            fallback = str(error)
    return _truncate(fallback) or "connection failed", connecting


def _exception_chain(exc: BaseException) -> list[BaseException]:
    """`exc` and everything it wraps: causes, contexts, exception groups and exception arguments."""
    seen: set[int] = set()
    order: list[BaseException] = []
    stack = [exc]
    while stack and len(order) < 50:
        error = stack.pop(0)
        if id(error) in seen:
            continue
        seen.add(id(error))
        order.append(error)
        wrapped = [error.__cause__, error.__context__, *getattr(error, "exceptions", ()), *error.args]
        stack.extend(item for item in wrapped if isinstance(item, BaseException))
    return order


def _truncate(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= _DETAIL_CHARS else text[: _DETAIL_CHARS - 1] + "…"


@functools.lru_cache(maxsize=16)
def _secret_pattern(api_key: str | None) -> re.Pattern[str] | None:
    """`api_key` as a whole token (not inside a longer word or key), or None when it cannot be a secret:
    no key, the default, or one shorter than `_MIN_SECRET_CHARS`."""
    if not api_key or api_key == DEFAULT_API_KEY or len(api_key) < _MIN_SECRET_CHARS:
        return None
    return re.compile(rf"(?<![A-Za-z0-9]){re.escape(api_key)}(?![A-Za-z0-9])")


def _mask(text: str, api_key: str | None) -> str:
    """`text` (from a server or the network) with every whole-token occurrence of a secret key masked."""
    pattern = _secret_pattern(api_key)
    return pattern.sub(_MASK, text) if pattern else text


def _retry_after(exc: BaseException) -> float | None:
    response = getattr(exc, "response", None)
    return retry_after_seconds(getattr(response, "headers", None))


# ---------------------------------------------------------------------------------------------- the model


def _probe_params(model: str) -> dict[str, Any]:
    """The tiny request of a preflight check and of a breaker probe."""
    return {
        "model": model,
        "messages": [{"role": "user", "content": "Reply with OK."}],
        "max_tokens": 1,
        "temperature": 0.0,
    }


class OpenAIChatModel:
    """A `ChatModel` over one OpenAI-compatible endpoint.

    Args:
        model: the model name sent with every request; also `name`.
        base_url: the server's API root, e.g. `http://127.0.0.1:8000/v1`; None means the SDK's default
            (`OPENAI_BASE_URL`, else OpenAI).
        api_key: the key; None sends "EMPTY", which local servers accept. The caller reads the environment.
        timeout: seconds per request.
        max_concurrency: requests in flight at once through this instance.
        retry: backoff for retryable errors; `RetryPolicy()` by default.
        cache: replies are looked up here first and stored after a successful call.
        price_override: (input, output) USD per 1M tokens, for models `josh.llm.pricing` does not know.
        breaker: the circuit breaker of this endpoint, shared with the other models that talk to it; None
            (the default) means none: every request spends its own retries, whatever the others see.
        trailing_assistant: "keep" sends the caller's messages as they are until the server refuses
            trailing assistant messages; "as_user" sends them as one user message from the start.

    `adaptations` lists, in words, each change this instance made to the wire form because the server
    refused the caller's (for the run's record).
    """

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        timeout: float = 120.0,
        max_concurrency: int = 16,
        retry: RetryPolicy | None = None,
        cache: ResponseCache | None = None,
        price_override: tuple[float, float] | None = None,
        breaker: EndpointBreaker | None = None,
        trailing_assistant: TrailingAssistant = "keep",
    ) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {max_concurrency}")
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        if trailing_assistant not in ("keep", "as_user"):
            raise ValueError(f"trailing_assistant must be 'keep' or 'as_user', got {trailing_assistant!r}")
        self.name = model
        self.timeout = timeout
        self.retry = retry if retry is not None else RetryPolicy()
        self.cache = cache
        self.price_override = price_override
        self.breaker = breaker
        self.adaptations: list[str] = []
        self._trailing: TrailingAssistant = trailing_assistant
        self._api_key = _Secret(api_key or DEFAULT_API_KEY)
        self._client = openai.AsyncOpenAI(
            api_key=self._api_key.value, base_url=base_url, timeout=timeout, max_retries=0
        )
        self.base_url = str(self._client.base_url).rstrip("/")
        self._semaphore = asyncio.Semaphore(max_concurrency)

    def __repr__(self) -> str:
        return f"OpenAIChatModel(model={self.name!r}, base_url={self.base_url!r})"

    __str__ = __repr__

    async def __aenter__(self) -> OpenAIChatModel:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    @property
    def trailing_assistant(self) -> TrailingAssistant:
        """How trailing assistant messages are sent now: "keep" or "as_user" (after a refusal, or if asked)."""
        return self._trailing

    async def aclose(self) -> None:
        """Close the HTTP connections. The cache belongs to the caller and stays open."""
        await self._client.close()

    async def chat(
        self,
        messages: Sequence[Message],
        *,
        tools: Sequence[Mapping[str, Any]] | None = None,
        n: int = 1,
        temperature: float = 0.0,
        max_tokens: int | None = None,
        seed: int | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> list[AssistantMessage]:
        """Return `n` completions; see `ChatModel.chat`.

        A server that returns fewer than `n` choices (llama.cpp ignores `n`) is asked again for the rest.
        The cache key is made of the caller's messages, whatever wire form the server is sent.
        """
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        wire = [to_wire(message) for message in messages]
        tool_list = [dict(tool) for tool in tools] if tools else None
        headers = metadata_headers(metadata)
        key = None
        if self.cache is not None:
            request = {
                "model": self.name,
                "base_url": self.base_url,
                "messages": wire,
                "tools": tool_list,
                "n": n,
                "temperature": temperature,
                "max_tokens": max_tokens,
                "seed": seed,
                "metadata": {str(k): str(v) for k, v in (metadata or {}).items()},
            }
            key = ResponseCache.make_key(request)
            hit = await asyncio.to_thread(self.cache.get, key)
            if hit is not None and len(hit) == n:
                return hit
        replies: list[AssistantMessage] = []
        while len(replies) < n:
            params: dict[str, Any] = {"model": self.name, "messages": wire, "temperature": temperature}
            if n - len(replies) != 1:
                params["n"] = n - len(replies)
            if tool_list:
                params["tools"] = tool_list
            if max_tokens is not None:
                params["max_tokens"] = max_tokens
            if seed is not None:
                params["seed"] = seed
            replies.extend(await self._complete(params, headers))
        replies = replies[:n]
        if self.cache is not None and key is not None:
            await asyncio.to_thread(self.cache.put, key, replies)
        return replies

    async def check(self) -> None:
        """Preflight before a long run: one tiny request, retried per `self.retry` like any other.

        Each try waits at most `CHECK_TIMEOUT` seconds. Retryable failures (HTTP 5xx, 408/409, timeouts,
        dropped connections, malformed answers) are retried; a connection that cannot be made at all
        (connection refused, host not found, TLS) fails at once, since nothing is listening. A rate limit or a
        400 (the probe's `max_tokens=1` is not accepted by every model) still proves the endpoint, key and
        model, so both pass. Raises `EndpointError` when the endpoint cannot be reached, rejects the key,
        does not know the model, or still fails when the retries run out. The breaker is not involved.
        """
        timeout = min(self.timeout, CHECK_TIMEOUT)

        async def once() -> None:
            try:
                await self._send(_probe_params(self.name), {}, timeout=timeout)
            except (openai.RateLimitError, openai.BadRequestError) as exc:
                error = self._classify(exc)
                if isinstance(exc, openai.BadRequestError) or isinstance(error, RetryableLLMError):
                    log.info("preflight of %s at %s passed with: %s", self.name, self.base_url, error)
                    return
                raise

        await self._with_retries(once, preflight=True)

    async def list_models(self) -> list[str]:
        """The ids of the models the endpoint serves (`GET /models`), in its order.

        A start-up check, like `check`: errors are classified like chat errors and retried per `self.retry`,
        except a connection that cannot be made at all (`UnreachableError` at once); any failure that ends
        it is an `EndpointError`.
        """
        timeout = min(self.timeout, CHECK_TIMEOUT)

        async def once() -> list[str]:
            page = await self._client.models.list(timeout=timeout)
            data = _field(page, "data")
            if not isinstance(data, list):
                raise _MalformedResponseError(f"no model list in {_truncate(repr(page))}", "a model list")
            ids = [_field(item, "id") for item in data]
            return [model_id for model_id in ids if isinstance(model_id, str) and model_id]

        return await self._with_retries(once, preflight=True)

    async def context_window(self) -> ContextWindow | None:
        """The context the server gives this model, where it says: llama.cpp's context per slot (`/props`
        `default_generation_settings.n_ctx`, else its `/v1/models` `meta.n_ctx`, else the model's
        `n_ctx_train`), vLLM's `max_model_len` (`/v1/models`). None when the server does not say (OpenAI) or
        cannot be asked: this is a best-effort look, never an error."""
        listing = await self._get_json(f"{self.base_url}/models")
        entries = listing.get("data") if isinstance(listing, Mapping) else None
        if not isinstance(entries, list):
            return None
        entries = [entry for entry in entries if isinstance(entry, Mapping)]
        named = [entry for entry in entries if entry.get("id") == self.name]
        entry = named[0] if named else entries[0] if len(entries) == 1 else None
        if entry is None:
            return None
        meta = entry.get("meta")
        if isinstance(meta, Mapping):  # llama.cpp's server
            props = await self._get_json(f"{self._server_root}/props")
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

    async def prompt_size(
        self, messages: Sequence[Message], tools: Sequence[Mapping[str, Any]] | None = None
    ) -> PromptSize | None:
        """The tokens of a request's prompt as the server counts them: its chat template applied, then its
        tokenizer (vLLM: `/tokenize` with the messages; llama.cpp: `/apply-template`, then `/tokenize`).
        None when the server has no such routes."""
        wire = self._server_messages([to_wire(message) for message in messages])
        chat: dict[str, Any] = {"messages": wire}
        if tools:
            chat["tools"] = [dict(tool) for tool in tools]
        counted = "counted by the server's tokenizer and chat template"
        root = self._server_root
        vllm = await self._post_json(
            f"{root}/tokenize", {"model": self.name, **chat, "add_generation_prompt": True}
        )
        tokens = _count(vllm.get("count")) if isinstance(vllm, Mapping) else None
        if tokens is not None:
            return PromptSize(tokens, counted)
        rendered = await self._post_json(f"{root}/apply-template", chat)
        prompt = rendered.get("prompt") if isinstance(rendered, Mapping) else None
        if isinstance(prompt, str) and prompt:
            ids = await self._post_json(f"{root}/tokenize", {"content": prompt, "add_special": True})
            listed = ids.get("tokens") if isinstance(ids, Mapping) else None
            if isinstance(listed, list) and listed:
                return PromptSize(len(listed), counted)
        return None

    @property
    def _server_root(self) -> str:
        """The server's own routes (llama.cpp's `/props`, vLLM's `/tokenize`) sit beside `/v1`."""
        return self.base_url[: -len("/v1")] if self.base_url.endswith("/v1") else self.base_url

    async def _get_json(self, url: str) -> Any:
        return await self._side_request("GET", url)

    async def _post_json(self, url: str, body: dict[str, Any]) -> Any:
        return await self._side_request("POST", url, body)

    async def _side_request(self, method: str, url: str, body: dict[str, Any] | None = None) -> Any:
        """A request to a route the SDK does not know, once; its JSON, or None on any failure."""
        headers = {"Authorization": f"Bearer {self._api_key.value}"}
        try:
            async with httpx.AsyncClient(timeout=min(self.timeout, CHECK_TIMEOUT)) as client:
                response = await client.request(method, url, json=body, headers=headers)
            if response.status_code != 200:
                return None
            return response.json()
        except (httpx.HTTPError, ValueError) as exc:
            log.info("%s %s: %s", method, url, _mask(_truncate(str(exc)), self._api_key.value))
            return None

    async def _complete(self, params: dict[str, Any], headers: dict[str, str]) -> list[AssistantMessage]:
        """One request with retries, in the wire form this instance uses (see `trailing_as_user`).

        A refusal of trailing assistant messages switches the instance to the adapted form and repeats the
        request at once, without counting it as a retry.
        """
        caller_messages = params["messages"]
        sent = {**params, "messages": self._server_messages(caller_messages)}

        def adapt(failure: BaseException) -> bool:
            nonlocal sent
            if not _refuses_trailing_assistant(failure):
                return False
            adapted = _sendable(trailing_as_user(caller_messages))
            if adapted == sent["messages"]:
                return False  # nothing left to adapt: the refusal stands
            self._switch_to_user_tail(failure)
            sent = {**params, "messages": adapted}
            return True

        return await self._with_retries(lambda: self._request_once(sent, headers), recover=adapt)

    def _server_messages(self, wire: list[dict[str, Any]]) -> list[dict[str, Any]]:
        messages = trailing_as_user(wire) if self._trailing == "as_user" else wire
        return _sendable(messages)

    def _switch_to_user_tail(self, failure: openai.APIStatusError) -> None:
        if self._trailing == "as_user":
            return  # a concurrent request saw the same refusal first
        self._trailing = "as_user"
        detail = _mask(_status_detail(failure), self._api_key.value)
        line = (
            "trailing assistant messages sent as one user message: the server refused them "
            f"(HTTP {failure.status_code}: {detail})"
        )
        self.adaptations.append(line)
        log.warning("%s at %s: %s", self.name, self.base_url, line)

    async def _with_retries(
        self,
        once: Callable[[], Awaitable[_T]],
        *,
        recover: Callable[[BaseException], bool] | None = None,
        preflight: bool = False,
    ) -> _T:
        """Run `once` until it succeeds: retryable errors back off per `self.retry`, fatal ones raise.

        `recover(failure)` may fix a fatal failure; True repeats at once without counting an attempt. With a
        breaker (not for a preflight), every attempt first waits while it is open, unavailability failures
        are reported to it, and a request whose retries run out during an outage waits for the verdict
        instead of giving up: it goes on if the endpoint comes back, else raises `EndpointDownError`.
        """
        breaker = None if preflight else self.breaker
        attempt = 0
        while True:
            if breaker is not None:
                await breaker.wait_ready()
            attempt += 1
            try:
                result = await once()
            except _REQUEST_ERRORS as exc:
                failure: BaseException = exc
            else:
                if breaker is not None:
                    breaker.record_success()
                return result
            # Raised outside the except block, so an exception echoing the key is not kept as __context__.
            error = self._classify(failure)
            unavailable = is_unavailable(failure)
            if breaker is not None and unavailable:
                breaker.record_failure(
                    self._probe, endpoint=f"the endpoint {self.base_url}", error=str(error)
                )
            if isinstance(error, FatalLLMError):
                if recover is not None and recover(failure):
                    attempt -= 1
                    continue
                if preflight and not isinstance(error, EndpointError):
                    error = EndpointError(str(error))
                raise error from self._cause(failure)
            if preflight and _cannot_connect(failure):
                raise UnreachableError(str(error)) from self._cause(failure)
            if attempt >= self.retry.max_attempts:
                if breaker is not None and unavailable and breaker.is_open:
                    await breaker.wait_ready()  # an outage, not this request's failure: wait for the verdict
                    attempt -= 1
                    continue
                message = f"{error} (gave up after {attempt} attempts)"
                if preflight:
                    raise EndpointError(message) from self._cause(failure)
                raise RetryableLLMError(message) from self._cause(failure)
            wait = self.retry.delay(attempt, retry_after=_retry_after(failure))
            # Info, not a warning: retries are routine under load (-v shows them); what they end in is recorded.
            log.info(
                "%s: %s; retrying in %.2f s (attempt %d of %d)",
                self.name,
                error,
                wait,
                attempt + 1,
                self.retry.max_attempts,
            )
            await asyncio.sleep(wait)

    async def _probe(self) -> str | None:
        """The breaker's probe: the preflight's tiny request, once. None when the endpoint answered with
        anything but an unavailability failure (a 4xx or a rate limit is an answer), else that failure."""
        try:
            await self._send(_probe_params(self.name), {}, timeout=min(self.timeout, CHECK_TIMEOUT))
        except _REQUEST_ERRORS as exc:
            failure: BaseException = exc
        else:
            return None
        return str(self._classify(failure)) if is_unavailable(failure) else None

    async def _request_once(self, params: dict[str, Any], headers: dict[str, str]) -> list[AssistantMessage]:
        async with self._semaphore:
            return await self._send(params, headers)

    async def _send(
        self, params: dict[str, Any], headers: dict[str, str], **options: Any
    ) -> list[AssistantMessage]:
        """One request, bypassing the concurrency limit (a probe must not queue behind hung requests)."""
        start = time.perf_counter()
        response = await self._client.chat.completions.create(
            **params, extra_headers=headers or None, **options
        )
        return self._to_messages(response, time.perf_counter() - start)

    def _to_messages(self, response: Any, latency: float) -> list[AssistantMessage]:
        """The choices of a response as replies; raises `_MalformedResponseError` when it is not one."""
        choices = _field(response, "choices")
        if isinstance(response, str) or not isinstance(choices, list) or not choices:
            raise _MalformedResponseError(f"no choices in {_truncate(repr(response))}")
        raw_usage = _field(response, "usage")
        prompt_tokens = _field(raw_usage, "prompt_tokens")
        completion_tokens = _field(raw_usage, "completion_tokens")
        prompt_tokens = prompt_tokens if isinstance(prompt_tokens, int) else 0
        completion_tokens = completion_tokens if isinstance(completion_tokens, int) else 0
        usage = Usage(
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cost=cost(self.name, prompt_tokens, completion_tokens, self.price_override),
        )
        ordered = sorted(choices, key=lambda choice: _sort_index(_field(choice, "index")))
        replies = []
        for position, choice in enumerate(ordered):
            message = _field(choice, "message")
            content = _field(message, "content")
            if message is None or not isinstance(content, str | None):
                raise _MalformedResponseError(f"a choice has no readable message: {_truncate(repr(choice))}")
            sent_calls = _field(message, "tool_calls")
            raw_calls = sent_calls or []
            if not isinstance(raw_calls, list):
                raise _MalformedResponseError(f"tool_calls is not a list: {_truncate(repr(raw_calls))}")
            replies.append(
                AssistantMessage(
                    content=content or "",
                    tool_calls=tuple(parse_tool_call(raw) for raw in raw_calls),
                    usage=usage if position == 0 else Usage(),
                    latency_s=latency,
                    model=self.name,
                    empty_tool_calls=sent_calls == [],
                )
            )
        return replies

    def _classify(self, exc: BaseException) -> LLMError:
        return classify(exc, base_url=self.base_url, model=self.name, api_key=self._api_key.value)

    def _cause(self, exc: BaseException) -> BaseException | None:
        """`exc` to chain to, or None when its text would show the key (a server may echo it back)."""
        pattern = _secret_pattern(self._api_key.value)
        if pattern is not None and any(pattern.search(str(error)) for error in _exception_chain(exc)):
            return None
        return exc


def _count(value: Any) -> int | None:
    """A positive token count the server sent, else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _sort_index(index: Any) -> int:
    return index if isinstance(index, int) else 0
