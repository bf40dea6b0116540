"""`OpenAIChatModel`: the client of any OpenAI-compatible server (OpenAI, vLLM, llama.cpp, the josh mock), over
josh's thin HTTP client (`josh.llm.openai_compat.transport`) or the openai SDK: requests, retries, the circuit
breaker, the response cache, the concurrency limit.

With the wire format it sends (`josh.llm.openai_compat.wire`), the only module that builds OpenAI wire dicts.
Retries are ours (the SDK's `max_retries` is 0, so the two loops never multiply), every provider error (both
transports raise the SDK's exceptions) is
mapped to the `LLMError` tree by `classify` (`josh.llm.openai_compat.errors`), and the API key never appears
in a repr, an error message or a log line. An optional `EndpointBreaker` shared by the models of one endpoint
pauses every request during an outage (see `josh.llm.breaker`).

Message order: requests keep the caller's order (the paper's ReAct agent may end a request with one or two
assistant messages). A server that refuses trailing assistant messages (llama.cpp: "Cannot have 2 or more
assistant messages at the end of the list") switches that model instance, once, to sending them as one user
message; `OpenAIChatModel.adaptations` says so (`josh.llm.openai_compat.adaptations`).

Usage of a request with `n` choices is put entirely on the first reply (the others get zero usage): the
server reports one total, and this keeps sums over replies exact.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import TracebackType
from typing import Any, Literal, TypeVar

import httpx
import openai

from josh.llm.base import (
    EndpointError,
    EndpointOutageError,
    FatalLLMError,
    LLMError,
    RetryableLLMError,
    UnreachableError,
)
from josh.llm.breaker import EndpointBreaker
from josh.llm.cache import ResponseCache
from josh.llm.context import ContextWindow, PromptSize
from josh.llm.openai_compat.adaptations import (
    TrailingAssistant,
    sendable,
    served_context_window,
    served_prompt_size,
    trailing_as_user,
)
from josh.llm.openai_compat.errors import (
    DEFAULT_API_KEY,
    REQUEST_ERRORS,
    MalformedResponseError,
    Secret,
    cannot_connect,
    classify,
    exception_chain,
    is_unavailable,
    mask_secret,
    refuses_trailing_assistant,
    retry_after,
    secret_pattern,
    status_detail,
    truncate,
)
from josh.llm.openai_compat.transport import DirectTransport, uses_proxy
from josh.llm.openai_compat.wire import (
    PROBE_TEXT,
    call_headers,
    parse_tool_call,
    response_field,
    to_wire,
)
from josh.llm.openai_compat.wire_memo import shared_wire
from josh.llm.pricing import cost
from josh.llm.retry import RetryPolicy
from josh.types import AssistantMessage, Message, Usage

log = logging.getLogger(__name__)

CHECK_TIMEOUT = 15.0  # seconds a preflight `check` waits at most
OPENAI_URL = "https://api.openai.com/v1"
Transport = Literal["direct", "sdk"]
_T = TypeVar("_T")


def _probe_params(model: str) -> dict[str, Any]:
    """The tiny request of a preflight check and of a breaker probe."""
    return {
        "model": model,
        "messages": [{"role": "user", "content": PROBE_TEXT}],
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
        transport: "direct" (the default) sends requests with josh's thin HTTP/1.1 client
            (`josh.llm.openai_compat.transport`, ~10x less CPU a call than the SDK); "sdk" with the openai
            SDK. A URL the environment sends through a proxy always uses the SDK (`transport` says which).

    `adaptations` lists, in words, each change this instance made to the wire form because the server
    refused the caller's (for the run's record). `failover` (False by default; an `EndpointPool` sets it)
    makes a request raise `EndpointOutageError` as soon as the breaker is open instead of waiting for the
    endpoint to come back, so that it can go to another endpoint.
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
        transport: Transport = "direct",
    ) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {max_concurrency}")
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout}")
        if trailing_assistant not in ("keep", "as_user"):
            raise ValueError(f"trailing_assistant must be 'keep' or 'as_user', got {trailing_assistant!r}")
        if transport not in ("direct", "sdk"):
            raise ValueError(f"transport must be 'direct' or 'sdk', got {transport!r}")
        self.name = model
        self.timeout = timeout
        self.retry = retry if retry is not None else RetryPolicy()
        self.cache = cache
        self.price_override = price_override
        self.breaker = breaker
        self.adaptations: list[str] = []
        self.failover = False
        self._trailing: TrailingAssistant = trailing_assistant
        self._api_key = Secret(api_key or DEFAULT_API_KEY)
        # The SDK's own default: OPENAI_BASE_URL, else OpenAI.
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or OPENAI_URL).rstrip("/")
        if transport == "direct" and uses_proxy(self.base_url):
            transport = "sdk"
        self.transport: Transport = transport
        self._direct: DirectTransport | None = None
        self._client: openai.AsyncOpenAI | None = None
        if transport == "direct":
            self._direct = DirectTransport(self.base_url, {"Authorization": f"Bearer {self._api_key.value}"})
        else:
            self._client = openai.AsyncOpenAI(
                api_key=self._api_key.value, base_url=self.base_url, timeout=timeout, max_retries=0
            )
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
        if self._direct is not None:
            await self._direct.aclose()
        if self._client is not None:
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
        wire: list[dict[str, Any]] = [shared_wire(message) for message in messages]
        tool_list = [dict(tool) for tool in tools] if tools else None
        headers = call_headers(metadata)
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
            if self._direct is not None:
                page = await self._direct.request("GET", "/models", timeout=timeout)
            else:
                assert self._client is not None
                page = await self._client.models.list(timeout=timeout)
            data = response_field(page, "data")
            if not isinstance(data, list):
                raise MalformedResponseError(f"no model list in {truncate(repr(page))}", "a model list")
            ids = [response_field(item, "id") for item in data]
            return [model_id for model_id in ids if isinstance(model_id, str) and model_id]

        return await self._with_retries(once, preflight=True)

    async def context_window(self) -> ContextWindow | None:
        """The context the server gives this model, where it says (llama.cpp, vLLM: see
        `josh.llm.openai_compat.adaptations.served_context_window`). None when the server does not say
        (OpenAI) or cannot be asked: this is a best-effort look, never an error."""
        return await served_context_window(self._get_json, self.base_url, self.name)

    async def prompt_size(
        self, messages: Sequence[Message], tools: Sequence[Mapping[str, Any]] | None = None
    ) -> PromptSize | None:
        """The tokens of a request's prompt as the server counts them: its chat template applied, then its
        tokenizer (vLLM: `/tokenize` with the messages; llama.cpp: `/apply-template`, then `/tokenize`).
        None when the server has no such routes."""
        wire = self._server_messages([to_wire(message) for message in messages])
        return await served_prompt_size(self._post_json, self.base_url, self.name, wire, tools)

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
            log.info("%s %s: %s", method, url, mask_secret(truncate(str(exc)), self._api_key.value))
            return None

    async def _complete(self, params: dict[str, Any], headers: dict[str, str]) -> list[AssistantMessage]:
        """One request with retries, in the wire form this instance uses (see `trailing_as_user`).

        A refusal of trailing assistant messages switches the instance to the adapted form and repeats the
        request at once, without counting it as a retry.
        """
        caller_messages = params["messages"]
        shown = self._in_server_form(caller_messages)

        def request(messages: list[dict[str, Any]]) -> dict[str, Any]:
            # josh's transport cleans lone surrogates as it encodes (`request_json`); the SDK's cannot
            return {**params, "messages": messages if self._direct is not None else sendable(messages)}

        sent = request(shown)

        def adapt(failure: BaseException) -> bool:
            nonlocal sent, shown
            if not refuses_trailing_assistant(failure):
                return False
            adapted = trailing_as_user(caller_messages)
            if adapted == shown:
                return False  # nothing left to adapt: the refusal stands
            self._switch_to_user_tail(failure)
            shown, sent = adapted, request(adapted)
            return True

        return await self._with_retries(lambda: self._request_once(sent, headers), recover=adapt)

    def _in_server_form(self, wire: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """`wire` in the form this instance sends (see `trailing_as_user`)."""
        return trailing_as_user(wire) if self._trailing == "as_user" else wire

    def _server_messages(self, wire: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return sendable(self._in_server_form(wire))

    def _switch_to_user_tail(self, failure: openai.APIStatusError) -> None:
        if self._trailing == "as_user":
            return  # a concurrent request saw the same refusal first
        self._trailing = "as_user"
        detail = mask_secret(status_detail(failure), self._api_key.value)
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
                await self._ready(breaker)
            attempt += 1
            outages = breaker.outages if breaker is not None else 0
            try:
                result = await once()
            except REQUEST_ERRORS as exc:
                failure: BaseException = exc
            else:
                if breaker is not None:
                    breaker.record_success()
                return result
            # Raised outside the except block, so an exception echoing the key is not kept as __context__.
            error = self._classify(failure)
            unavailable = is_unavailable(failure)
            if (
                breaker is not None
                and unavailable
                and breaker.state == "closed"
                and breaker.outages != outages
            ):
                # Sent before an outage that has ended since (its answer came late): not news about the
                # endpoint now, and not this request's failure: send it again, uncounted.
                attempt -= 1
                continue
            if breaker is not None and unavailable:
                breaker.record_failure(
                    self._probe, endpoint=f"the endpoint {self.base_url}", error=str(error)
                )
                if self.failover and breaker.state != "closed":
                    raise EndpointOutageError(f"{self.base_url} is unavailable ({error})") from None
            if isinstance(error, FatalLLMError):
                if recover is not None and recover(failure):
                    attempt -= 1
                    continue
                if preflight and not isinstance(error, EndpointError):
                    error = EndpointError(str(error))
                raise error from self._cause(failure)
            if preflight and cannot_connect(failure):
                raise UnreachableError(str(error)) from self._cause(failure)
            if attempt >= self.retry.max_attempts:
                if breaker is not None and unavailable and breaker.is_open:
                    await self._ready(breaker)  # an outage, not this request's failure: wait for the verdict
                    attempt -= 1
                    continue
                message = f"{error} (gave up after {attempt} attempts)"
                if preflight:
                    raise EndpointError(message) from self._cause(failure)
                raise RetryableLLMError(message) from self._cause(failure)
            wait = self.retry.delay(attempt, retry_after=retry_after(failure))
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

    async def _ready(self, breaker: EndpointBreaker) -> None:
        """Wait while the breaker is open (see `EndpointBreaker.wait_ready`); with `failover`, raise
        `EndpointOutageError` at once instead."""
        if self.failover and breaker.state != "closed":
            raise EndpointOutageError(f"{self.base_url} is unavailable")
        await breaker.wait_ready()

    async def _probe(self) -> str | None:
        """The breaker's probe: the preflight's tiny request, once. None when the endpoint answered with
        anything but an unavailability failure (a 4xx or a rate limit is an answer), else that failure."""
        try:
            await self._send(_probe_params(self.name), {}, timeout=min(self.timeout, CHECK_TIMEOUT))
        except REQUEST_ERRORS as exc:
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
        if self._direct is not None:
            timeout = options.get("timeout", self.timeout)
            response = await self._direct.request(
                "POST", "/chat/completions", params, headers=headers, timeout=timeout
            )
        else:
            assert self._client is not None
            response = await self._client.chat.completions.create(
                **params, extra_headers=headers or None, **options
            )
        return self._to_messages(response, time.perf_counter() - start)

    def _to_messages(self, response: Any, latency: float) -> list[AssistantMessage]:
        """The choices of a response as replies; raises `MalformedResponseError` when it is not one."""
        choices = response_field(response, "choices")
        if isinstance(response, str) or not isinstance(choices, list) or not choices:
            raise MalformedResponseError(f"no choices in {truncate(repr(response))}")
        raw_usage = response_field(response, "usage")
        prompt_tokens = response_field(raw_usage, "prompt_tokens")
        completion_tokens = response_field(raw_usage, "completion_tokens")
        prompt_tokens = prompt_tokens if isinstance(prompt_tokens, int) else 0
        completion_tokens = completion_tokens if isinstance(completion_tokens, int) else 0
        usage = Usage(
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            cost=cost(self.name, prompt_tokens, completion_tokens, self.price_override),
        )
        ordered = sorted(choices, key=lambda choice: _sort_index(response_field(choice, "index")))
        replies = []
        for position, choice in enumerate(ordered):
            message = response_field(choice, "message")
            content = response_field(message, "content")
            if message is None or not isinstance(content, str | None):
                raise MalformedResponseError(f"a choice has no readable message: {truncate(repr(choice))}")
            sent_calls = response_field(message, "tool_calls")
            raw_calls = sent_calls or []
            if not isinstance(raw_calls, list):
                raise MalformedResponseError(f"tool_calls is not a list: {truncate(repr(raw_calls))}")
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
        pattern = secret_pattern(self._api_key.value)
        if pattern is not None and any(pattern.search(str(error)) for error in exception_chain(exc)):
            return None
        return exc


def _sort_index(index: Any) -> int:
    return index if isinstance(index, int) else 0
