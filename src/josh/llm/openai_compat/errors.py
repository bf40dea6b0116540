"""Errors of an OpenAI-compatible server, classified: `classify` maps every SDK (or response-parsing) exception
to the `LLMError` tree, with a message naming the endpoint and the likely fix (`RetryableLLMError`: timeouts,
dropped connections, 5xx, rate limits, malformed answers; `FatalLLMError`: a rejected request, a context too
long; `EndpointError`: what concerns the endpoint as a whole, a rejected key, an unknown model, an exhausted
quota). The API key never shows: `Secret` holds it, and `mask_secret` takes it out of whatever a server or the
network said.
"""

from __future__ import annotations

import functools
import json
import re
import socket
import ssl
from collections.abc import Callable, Mapping
from typing import TypeGuard

import openai

from josh.llm.base import ContextLengthError, EndpointError, FatalLLMError, LLMError, RetryableLLMError
from josh.llm.retry import retry_after_seconds

DEFAULT_API_KEY = "EMPTY"  # local servers (vLLM, llama.cpp) accept any key; the SDK refuses none
_DETAIL_CHARS = 300
_MASK = "***"
# Shorter keys ("x", "EMPTY", "sk-1") are the dummies local servers accept, not secrets: masking them would
# garble every message that contains their letters.
_MIN_SECRET_CHARS = 8
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


class MalformedResponseError(Exception):
    """The server answered with a success status but not with what was asked for."""

    def __init__(self, message: str, expected: str = "a chat completion") -> None:
        super().__init__(message)
        self.expected = expected


# Exceptions a request can end in that `classify` understands; anything else is a bug and propagates as is.
# The SDK raises JSONDecodeError itself when a body labelled JSON does not parse.
REQUEST_ERRORS = (openai.OpenAIError, MalformedResponseError, json.JSONDecodeError, UnicodeDecodeError)


class Secret:
    """A string that never shows itself."""

    __slots__ = ("value",)

    def __init__(self, value: str) -> None:
        self.value = value

    def __repr__(self) -> str:
        return repr(_MASK)

    __str__ = __repr__


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
    error_type, message = _classify(exc, base_url.rstrip("/"), model, lambda text: mask_secret(text, api_key))
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
    if isinstance(exc, openai.APIResponseValidationError | MalformedResponseError | ValueError):
        detail = foreign(truncate(str(exc))) or type(exc).__name__
        expected = getattr(exc, "expected", "a chat completion")
        return RetryableLLMError, f"{endpoint} sent a response that is not {expected} ({detail})"
    detail = foreign(truncate(str(exc)))
    return FatalLLMError, f"unexpected error from {endpoint}: {type(exc).__name__}: {detail}"


def _classify_status(
    exc: openai.APIStatusError, endpoint: str, model_name: str, foreign: Callable[[str], str]
) -> tuple[type[LLMError], str]:
    status = exc.status_code
    detail = foreign(status_detail(exc))
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


def cannot_connect(exc: BaseException) -> bool:
    """A connection that could not be made at all (refused, unknown host, TLS): nothing to retry for."""
    if not isinstance(exc, openai.APIConnectionError) or isinstance(exc, openai.APITimeoutError):
        return False
    return _connection_reason(exc)[1]


def refuses_trailing_assistant(exc: BaseException) -> TypeGuard[openai.APIStatusError]:
    return (
        isinstance(exc, openai.APIStatusError)
        and exc.status_code in (400, 422)
        and bool(_TRAILING_ASSISTANT_REFUSAL.search(status_detail(exc)))
    )


def status_detail(exc: openai.APIStatusError) -> str:
    body = exc.body
    error = body.get("error", body) if isinstance(body, Mapping) else body
    if isinstance(error, Mapping):
        error = error.get("message") or error.get("detail") or error
    text = error if isinstance(error, str) and error.strip() else exc.message
    return truncate(text)


def _connection_reason(exc: BaseException) -> tuple[str, bool]:
    """A short reason for a connection failure, and whether it happened while connecting."""
    connecting = False
    fallback = ""
    for error in exception_chain(exc):
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
    return truncate(fallback) or "connection failed", connecting


def exception_chain(exc: BaseException) -> list[BaseException]:
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


def truncate(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= _DETAIL_CHARS else text[: _DETAIL_CHARS - 1] + "…"


@functools.lru_cache(maxsize=16)
def secret_pattern(api_key: str | None) -> re.Pattern[str] | None:
    """`api_key` as a whole token (not inside a longer word or key), or None when it cannot be a secret:
    no key, the default, or one shorter than `_MIN_SECRET_CHARS`."""
    if not api_key or api_key == DEFAULT_API_KEY or len(api_key) < _MIN_SECRET_CHARS:
        return None
    return re.compile(rf"(?<![A-Za-z0-9]){re.escape(api_key)}(?![A-Za-z0-9])")


def mask_secret(text: str, api_key: str | None) -> str:
    """`text` (from a server or the network) with every whole-token occurrence of a secret key masked."""
    pattern = secret_pattern(api_key)
    return pattern.sub(_MASK, text) if pattern else text


def retry_after(exc: BaseException) -> float | None:
    response = getattr(exc, "response", None)
    return retry_after_seconds(getattr(response, "headers", None))
