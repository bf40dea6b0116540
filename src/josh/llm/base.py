"""The chat-model protocol every backend implements, and the one error tree of the LLM layer."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from josh.errors import JoshError
from josh.types import AssistantMessage, Message


class LLMError(JoshError):
    """A model call failed."""


class RetryableLLMError(LLMError):
    """Rate limit, timeout, 5xx or a dropped connection: worth another try."""


class EndpointOutageError(RetryableLLMError):
    """The endpoint's circuit breaker is open and its model was told not to wait for it
    (`OpenAIChatModel.failover`, set by an `EndpointPool`, which sends the request to another endpoint)."""


class FatalLLMError(LLMError):
    """Bad API key, bad request, unknown model, context too long: retrying cannot help.

    A plain `FatalLLMError` concerns one conversation (its context is too long, the server refused its
    request); the subclass `EndpointError` concerns the endpoint as a whole.
    """


class ContextLengthError(FatalLLMError):
    """The request does not fit the model's context window (a server's "maximum context length", llama.cpp's
    "exceeds the available context size"): the same conversation would fail the same way if run again; a
    larger context, or a shorter conversation, is what helps."""


def is_context_overflow(error: str | None) -> bool:
    """Whether a recorded error (a record's `error`, `"ContextLengthError: ..."`) is a context overflow."""
    return bool(error) and str(error).startswith(f"{ContextLengthError.__name__}:")


class EndpointError(FatalLLMError):
    """The endpoint as a whole is unusable (key rejected, access refused, no such model or route, quota used
    up): every conversation would fail alike, so a run should stop rather than record one error per task."""


class UnreachableError(EndpointError):
    """Nothing answers at the endpoint's address (connection refused, no such host, a TLS failure): a start-up
    check says so at once, without retrying."""


class EndpointDownError(EndpointError):
    """The endpoint stayed unavailable longer than the circuit breaker waits (see `josh.llm.breaker`)."""


@runtime_checkable
class ChatModel(Protocol):
    """An async chat model. Everything that talks to a model goes through `chat`."""

    name: str

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
        """Return `n` completions, each with its token usage, cost and latency.

        `tools` are OpenAI function schemas. `metadata` (task id, trial, role) travels as `X-Josh-*`
        request headers, which real servers ignore and the mock endpoint uses; it is part of the cache key.
        Raises `RetryableLLMError` once retries are exhausted, `FatalLLMError` at once (`EndpointError` when
        the failure concerns the endpoint rather than this conversation).
        """
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...
