"""The OpenAI-compatible backend against a scripted local fake server (127.0.0.1 only, no network)."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import socket
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from josh.llm import (
    ChatModel,
    EndpointError,
    FatalLLMError,
    LLMError,
    OpenAIChatModel,
    ResponseCache,
    RetryableLLMError,
    RetryPolicy,
)
from josh.llm.base import UnreachableError
from josh.llm.openai_compat.adaptations import trailing_as_user
from josh.llm.openai_compat.errors import classify
from josh.llm.openai_compat.wire import metadata_headers, parse_tool_call, to_wire
from josh.llm.pricing import cost, price_for
from josh.llm.retry import retry_after_seconds
from josh.types import (
    MAX_DEPTH,
    TOO_DEEP,
    AssistantMessage,
    SystemMessage,
    ToolCall,
    ToolMessage,
    Usage,
    UserMessage,
)

SECRET = "sk-test-SECRET-123"
FAST = RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.02)
TIMEOUT = 0.5
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_booking",
            "description": "Look up a booking.",
            "parameters": {
                "type": "object",
                "properties": {"booking_id": {"type": "string"}},
                "required": ["booking_id"],
            },
        },
    }
]


# ---------------------------------------------------------------------------------------------- fake server


@dataclass
class Reply:
    """One scripted behaviour of the fake server."""

    kind: str = "text"  # text | tool | status | hang | invalid_json
    content: str = "hello"
    tool_calls: list[dict[str, Any]] | None = None
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    honour_n: bool = True
    usage: tuple[int, int] = (1000, 200)


def text(content: str = "hello", **kwargs: Any) -> Reply:
    return Reply("text", content=content, **kwargs)


def tool(name: str, arguments: Any, call_id: str | None = "call_1") -> Reply:
    call: dict[str, Any] = {"type": "function", "function": {"name": name, "arguments": arguments}}
    if call_id is not None:
        call["id"] = call_id
    return Reply("tool", tool_calls=[call])


def status(code: int, body: Any = None, headers: dict[str, str] | None = None) -> Reply:
    body = body if body is not None else {"error": {"message": f"scripted HTTP {code}", "type": "error"}}
    return Reply("status", status=code, body=body, headers=headers or {})


@dataclass
class Seen:
    path: str
    headers: dict[str, str]  # lower-cased names
    body: dict[str, Any]


class FakeOpenAI:
    """`POST /v1/chat/completions` answering from a script; records requests and the peak concurrency.

    `GET /v1/models` lists `models` (a scripted `status` reply answers it instead). `rule(body)`, when set,
    may answer a chat request before the script (a server's own validation, such as llama.cpp's).
    """

    def __init__(self, port: int = 0) -> None:
        self.script: deque[Reply] = deque()
        self.default = text()
        self.requests: list[Seen] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self.models = ["model-a", "model-b"]
        self.rule: Any = None
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                fake.handle(self)

            def do_GET(self) -> None:
                fake.handle_get(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.server.block_on_close = False  # hanging handlers must not stall teardown
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/v1"

    def queue(self, *replies: Reply) -> None:
        self.script.extend(replies)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def handle_get(self, handler: BaseHTTPRequestHandler) -> None:
        with self.lock:
            self.requests.append(Seen(handler.path, {k.lower(): v for k, v in handler.headers.items()}, {}))
            reply = self.script.popleft() if self.script else self.default
        if handler.path != "/v1/models":
            self.send(handler, 404, {"error": {"message": "no such route"}})
        elif reply.kind == "status":
            self.send(handler, reply.status, reply.body, reply.headers)
        else:
            data = [{"id": m, "object": "model", "created": 0, "owned_by": "test"} for m in self.models]
            self.send(handler, 200, {"object": "list", "data": data})

    def handle(self, handler: BaseHTTPRequestHandler) -> None:
        raw = handler.rfile.read(int(handler.headers.get("Content-Length", 0)))
        body = json.loads(raw)
        with self.lock:
            self.requests.append(Seen(handler.path, {k.lower(): v for k, v in handler.headers.items()}, body))
            ruled = self.rule(body) if self.rule is not None else None
            reply = ruled or (self.script.popleft() if self.script else self.default)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if handler.path != "/v1/chat/completions":
                self.send(handler, 404, {"error": {"message": "no such route"}})
            elif reply.kind == "hang":
                time.sleep(reply.delay)
                self.send(handler, 200, completion(body, text()))
            elif reply.kind == "invalid_json":
                self.send(handler, 200, b'{"id": "x", "choices": [')
            elif reply.kind == "status":
                self.send(handler, reply.status, reply.body, reply.headers)
            else:
                time.sleep(reply.delay)
                self.send(handler, 200, completion(body, reply))
        except OSError:  # the client gave up (timeout) and closed the connection
            pass
        finally:
            with self.lock:
                self.in_flight -= 1

    @staticmethod
    def send(
        handler: BaseHTTPRequestHandler, code: int, body: Any, headers: dict[str, str] | None = None
    ) -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        handler.send_response(code)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(data)


def completion(request: dict[str, Any], reply: Reply) -> dict[str, Any]:
    n = request.get("n", 1) if reply.honour_n else 1
    choices = []
    for index in range(n):
        message: dict[str, Any] = {"role": "assistant", "content": None}
        if reply.tool_calls is not None:
            message["tool_calls"] = reply.tool_calls
        if reply.kind == "text":
            message["content"] = reply.content if n == 1 else f"{reply.content} #{index}"
        choices.append({"index": index, "message": message, "finish_reason": "stop"})
    prompt, completion_tokens = reply.usage
    return {
        "id": "chatcmpl-test",
        "object": "chat.completion",
        "created": 0,
        "model": request["model"],
        "choices": choices,
        "usage": {
            "prompt_tokens": prompt,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt + completion_tokens,
        },
    }


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI()
    yield server
    server.close()


def make_model(base_url: str, **kwargs: Any) -> OpenAIChatModel:
    options: dict[str, Any] = {"api_key": SECRET, "timeout": TIMEOUT, "retry": FAST}
    options.update(kwargs)
    return OpenAIChatModel(options.pop("model", "gpt-4o-mini"), base_url=base_url, **options)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def chat_once(base_url: str, messages: list[Any] | None = None, **kwargs: Any) -> list[AssistantMessage]:
    model_keys = ("retry", "cache", "max_concurrency", "model", "trailing_assistant", "price_override")
    model_options = {k: kwargs.pop(k) for k in model_keys if k in kwargs}

    async def run() -> list[AssistantMessage]:
        async with make_model(base_url, **model_options) as model:
            return await model.chat(messages or [UserMessage(content="hi")], **kwargs)

    return asyncio.run(run())


def error_texts(exc: BaseException) -> str:
    """The text of an exception and of everything chained to it."""
    texts, seen, current = [], set(), [exc]
    while current:
        error = current.pop()
        if error is None or id(error) in seen:
            continue
        seen.add(id(error))
        texts.append(f"{error!s} {error!r}")
        current.extend([error.__cause__, error.__context__])
    return "\n".join(texts)


# ---------------------------------------------------------------------------------------------- round trips


def test_text_reply_with_usage_and_cost(fake: FakeOpenAI) -> None:
    fake.queue(text("hello there", usage=(1000, 200)))
    [reply] = chat_once(fake.base_url, [SystemMessage(content="be brief"), UserMessage(content="hi")])
    assert reply.content == "hello there"
    assert reply.tool_calls == ()
    assert reply.model == "gpt-4o-mini"
    assert reply.latency_s is not None and reply.latency_s >= 0
    assert reply.usage is not None and not reply.usage.cached
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (1000, 200)
    assert reply.usage.cost == pytest.approx((1000 * 0.15 + 200 * 0.60) / 1e6)
    [seen] = fake.requests
    assert seen.path == "/v1/chat/completions"
    assert seen.body["model"] == "gpt-4o-mini"
    assert seen.body["messages"] == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hi"},
    ]
    assert seen.body["temperature"] == 0.0
    for absent in ("tools", "seed", "max_tokens", "n"):  # servers may reject nulls
        assert absent not in seen.body
    assert seen.headers["authorization"] == f"Bearer {SECRET}"


def test_tool_call_round_trip_and_wire_format(fake: FakeOpenAI) -> None:
    fake.queue(tool("get_booking", json.dumps({"booking_id": "B1"})), text("it is confirmed"))

    async def run() -> tuple[AssistantMessage, AssistantMessage]:
        async with make_model(fake.base_url) as model:
            assert isinstance(model, ChatModel)
            history: list[Any] = [UserMessage(content="status of B1?")]
            [call_turn] = await model.chat(history, tools=TOOLS)
            history += [
                call_turn,
                ToolMessage(tool_call_id="call_1", name="get_booking", content='{"ok": 1}'),
            ]
            [answer] = await model.chat(history, tools=TOOLS, seed=7, max_tokens=64)
            return call_turn, answer

    call_turn, answer = asyncio.run(run())
    assert call_turn.content == ""
    assert call_turn.tool_calls == (
        ToolCall(
            id="call_1",
            name="get_booking",
            arguments={"booking_id": "B1"},
            raw_arguments='{"booking_id": "B1"}',
        ),
    )
    assert answer.content == "it is confirmed"
    first, second = fake.requests
    assert first.body["tools"] == TOOLS
    assert second.body["tools"] == TOOLS
    assert second.body["seed"] == 7 and second.body["max_tokens"] == 64
    assert second.body["messages"] == [
        {"role": "user", "content": "status of B1?"},
        {
            "role": "assistant",
            "content": "",  # never null: llama.cpp rejects it
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_booking", "arguments": '{"booking_id": "B1"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"ok": 1}'},
    ]


def test_unparsed_tool_call_is_replayed_verbatim() -> None:
    call = ToolCall(id="c", name="f", raw_arguments="{oops", parse_error="bad json")
    wire = to_wire(AssistantMessage(tool_calls=(call,)))
    assert wire["content"] == ""
    assert wire["tool_calls"][0]["function"] == {"name": "f", "arguments": "{oops"}


def test_metadata_travels_as_headers(fake: FakeOpenAI) -> None:
    chat_once(fake.base_url, metadata={"task_id": "MUL0003", "role": "agent", "trial": "2"})
    headers = fake.requests[0].headers
    assert headers["x-josh-task-id"] == "MUL0003"
    assert headers["x-josh-role"] == "agent"
    assert headers["x-josh-trial"] == "2"
    assert metadata_headers({"task_id": "MUL0003"}) == {"X-Josh-Task-Id": "MUL0003"}


@pytest.mark.parametrize(
    ("arguments", "reason"),
    [
        ('{"booking_id": "B1"', "not valid JSON"),
        ("[1, 2]", "got an array"),
        ('"B1"', "got a string"),
        (42, "not a JSON string"),
    ],
)
def test_malformed_tool_arguments_become_parse_errors(fake: FakeOpenAI, arguments: Any, reason: str) -> None:
    fake.queue(tool("get_booking", arguments, call_id=None))
    [reply] = chat_once(fake.base_url, tools=TOOLS)
    [call] = reply.tool_calls
    assert call.name == "get_booking"
    assert call.arguments == {}
    assert call.raw_arguments == str(arguments)
    assert call.parse_error is not None and reason in call.parse_error
    assert call.id.startswith("call_") and len(call.id) > len("call_")  # generated for a missing id
    assert len(fake.requests) == 1  # a parse error is the model's mistake, not a reason to retry


def test_empty_tool_arguments_mean_no_arguments(fake: FakeOpenAI) -> None:
    fake.queue(tool("list_bookings", ""))
    [reply] = chat_once(fake.base_url, tools=TOOLS)
    # Lenient: {} and no parse error; the empty string is kept verbatim for a strict check and for replay.
    assert reply.tool_calls == (ToolCall(id="call_1", name="list_bookings", arguments={}, raw_arguments=""),)
    assert to_wire(reply)["tool_calls"][0]["function"] == {"name": "list_bookings", "arguments": ""}


def test_n_choices_put_usage_on_the_first(fake: FakeOpenAI) -> None:
    fake.queue(text("a", usage=(10, 4)))
    replies = chat_once(fake.base_url, n=2, temperature=1.0)
    assert [r.content for r in replies] == ["a #0", "a #1"]
    assert replies[0].usage is not None and replies[0].usage.total_tokens == 14
    assert replies[1].usage == Usage()
    assert fake.requests[0].body["n"] == 2


def test_server_ignoring_n_is_asked_again(fake: FakeOpenAI) -> None:
    fake.default = text("one", honour_n=False)
    replies = chat_once(fake.base_url, n=3, temperature=1.0)
    assert len(replies) == 3
    assert [seen.body.get("n", 1) for seen in fake.requests] == [3, 2, 1]


# ---------------------------------------------------------------------------------------------- retries


@pytest.mark.parametrize(
    "failure",
    [
        status(500),
        status(503, body="<html>upstream down</html>"),
        Reply("hang", delay=TIMEOUT * 2),
        Reply("invalid_json"),
    ],
    ids=["500", "503-html", "hang", "invalid-json"],
)
def test_retryable_failure_then_success(fake: FakeOpenAI, failure: Reply) -> None:
    fake.queue(failure, text("recovered"))
    [reply] = chat_once(fake.base_url)
    assert reply.content == "recovered"
    assert len(fake.requests) == 2


def test_rate_limit_honours_retry_after(fake: FakeOpenAI) -> None:
    fake.queue(status(429, headers={"Retry-After": "0"}), text("recovered"))
    slow = RetryPolicy(max_attempts=3, base_delay=5.0, max_delay=5.0)  # would wait up to 5 s without it
    start = time.monotonic()
    [reply] = chat_once(fake.base_url, retry=slow)
    assert time.monotonic() - start < 2.0
    assert reply.content == "recovered"
    assert len(fake.requests) == 2


def test_retries_exhausted(fake: FakeOpenAI) -> None:
    fake.queue(status(500), status(500), status(500), text("too late"))
    with pytest.raises(RetryableLLMError, match="gave up after 3 attempts") as info:
        chat_once(fake.base_url, retry=RetryPolicy(max_attempts=3, base_delay=0.01))
    assert "HTTP 500" in str(info.value)
    assert len(fake.requests) == 3


def test_unauthorized_is_fatal_at_once_and_masks_the_key(fake: FakeOpenAI) -> None:
    echo = {"error": {"message": f"Incorrect API key provided: {SECRET}.", "code": "invalid_api_key"}}
    fake.queue(status(401, body=echo))
    with pytest.raises(FatalLLMError) as info:
        chat_once(fake.base_url)
    message = str(info.value)
    assert "rejected the API key (HTTP 401)" in message and "OPENAI_API_KEY" in message
    assert fake.base_url in message
    assert SECRET not in error_texts(info.value)
    assert len(fake.requests) == 1


@pytest.mark.parametrize(
    ("code", "body", "expected"),
    [
        (
            404,
            {"error": {"message": "The model `gpt-x` does not exist"}},
            "check the model name and --base-url",
        ),
        (403, {"error": {"message": "no access"}}, "refused access"),
        (
            400,
            {
                "error": {
                    "message": "maximum context length is 8192 tokens",
                    "code": "context_length_exceeded",
                }
            },
            "context window",
        ),
        (400, {"error": {"message": "temperature is not supported"}}, "supported parameters"),
        (
            429,
            {"error": {"message": "You exceeded your current quota", "code": "insufficient_quota"}},
            "quota",
        ),
    ],
)
def test_fatal_statuses_are_not_retried(fake: FakeOpenAI, code: int, body: Any, expected: str) -> None:
    fake.queue(status(code, body=body))
    with pytest.raises(FatalLLMError, match=expected):
        chat_once(fake.base_url)
    assert len(fake.requests) == 1


@pytest.mark.parametrize(
    ("code", "body", "endpoint_wide"),
    [
        (401, {"error": {"message": "bad key"}}, True),
        (403, {"error": {"message": "no access"}}, True),
        (404, {"error": {"message": "The model `gpt-x` does not exist"}}, True),
        (429, {"error": {"message": "You exceeded your current quota", "code": "insufficient_quota"}}, True),
        (400, {"error": {"message": "maximum context length is 8192 tokens"}}, False),
        (400, {"error": {"message": "bad request"}}, False),
        (422, {"error": {"message": "unprocessable"}}, False),
    ],
)
def test_endpoint_errors_are_told_apart_from_conversation_errors(
    fake: FakeOpenAI, code: int, body: Any, endpoint_wide: bool
) -> None:
    fake.queue(status(code, body=body))
    with pytest.raises(FatalLLMError) as info:
        chat_once(fake.base_url)
    assert isinstance(info.value, EndpointError) is endpoint_wide


@pytest.mark.parametrize(
    ("detail", "present", "absent"),
    [
        (
            "Cannot have 2 or more assistant messages at the end of the list.",
            ["refused the order of the messages", "Cannot have 2 or more assistant messages"],
            ["temperature", "max_tokens", "supported parameters"],
        ),
        (
            "temperature is not supported with this model",
            ["supported parameters (temperature)", "temperature is not supported"],
            ["max_tokens", "tools"],
        ),
        (
            "Unsupported parameter: 'max_tokens'. Use 'max_completion_tokens' instead.",
            ["supported parameters (max_tokens, max_completion_tokens)"],
            ["temperature"],
        ),
        (
            "Invalid 'messages[1].content': string too long.",
            ["rejected the request (HTTP 400: Invalid 'messages[1].content': string too long.)"],
            ["temperature", "max_tokens", "supported parameters"],
        ),
    ],
    ids=["message-order", "temperature", "max-tokens", "other"],
)
def test_a_400_hint_follows_the_server_message(detail: str, present: list[str], absent: list[str]) -> None:
    response = httpx.Response(400, request=httpx.Request("POST", "http://x/v1/chat/completions"))
    exc = openai.BadRequestError(detail, response=response, body={"error": {"message": detail}})
    message = str(classify(exc, base_url="http://x/v1", model="m"))
    for text_ in present:
        assert text_ in message
    for text_ in absent:
        assert text_ not in message


def test_retry_logs_never_show_the_key(fake: FakeOpenAI, caplog: pytest.LogCaptureFixture) -> None:
    fake.queue(status(500, body={"error": {"message": f"boom for {SECRET}"}}), text("ok"))
    with caplog.at_level(logging.DEBUG):
        chat_once(fake.base_url)
    assert "retrying" in caplog.text
    assert "boom for ***" in caplog.text
    assert SECRET not in caplog.text


LONG_KEY = "sk-proj-" + "Zq7Xw2Lm9Pd4" * 2 + "Hc5Tn8Rb"  # 40 characters, as real keys are


async def _failure(base_url: str, key: str) -> str:
    async with make_model(base_url, api_key=key, retry=RetryPolicy(max_attempts=1)) as model:
        with pytest.raises(LLMError) as info:
            await model.chat([UserMessage(content="hi")])
    return str(info.value)


@pytest.mark.parametrize("key", ["e", "sk1", LONG_KEY], ids=["1-char", "3-char", "40-char"])
def test_only_a_key_that_can_be_a_secret_is_masked_and_never_josh_s_words(fake: FakeOpenAI, key: str) -> None:
    """A one-letter dummy key (normal for local servers) must not turn "connection refused" into
    "conn***ction r***fus***d"; a real key is masked wherever a server echoes it as a whole token."""
    refused = asyncio.run(_failure(f"http://127.0.0.1:{closed_port()}/v1", key))
    assert "(connection refused); is the server running? check --base-url" in refused
    assert "***" not in refused
    echo = f"Incorrect API key provided: {key}. Keys look like sk-... (see your settings)"
    fake.queue(status(401, body={"error": {"message": echo}}), status(500, body={"error": {"message": echo}}))
    rejected = asyncio.run(_failure(fake.base_url, key))
    assert "rejected the API key (HTTP 401); check OPENAI_API_KEY or --api-key-env" in rejected
    failed = asyncio.run(_failure(fake.base_url, key))
    if len(key) >= 8:
        assert key not in failed and "Incorrect API key provided: ***. Keys look like sk-..." in failed
    else:
        assert f"HTTP 500 (Incorrect API key provided: {key}. Keys look like sk-..." in failed


def test_a_key_is_masked_as_a_whole_token_not_inside_words() -> None:
    key = "password"  # long enough to be a secret, and a word too
    exc = RuntimeError("the password field: passwords differ from password.")
    message = str(classify(exc, base_url="http://x/v1", api_key=key))
    assert message.endswith("RuntimeError: the *** field: passwords differ from ***.")
    assert str(classify(RuntimeError("nothing to see"), api_key="e")).endswith("RuntimeError: nothing to see")


def test_key_not_in_repr_or_str() -> None:
    model = OpenAIChatModel("gpt-4o-mini", base_url="http://127.0.0.1:9/v1", api_key=SECRET)
    assert SECRET not in repr(model) and SECRET not in str(model)
    assert "gpt-4o-mini" in repr(model)
    assert SECRET not in repr(vars(model))
    asyncio.run(model.aclose())


def test_unreachable_endpoint_after_retries() -> None:
    base_url = f"http://127.0.0.1:{closed_port()}/v1"
    with pytest.raises(RetryableLLMError, match="cannot reach .*connection refused.*gave up after 2") as info:
        chat_once(base_url, retry=RetryPolicy(max_attempts=2, base_delay=0.01))
    assert SECRET not in error_texts(info.value)


# ---------------------------------------------------------------------------------------------- preflight


def test_check_unreachable_fails_fast() -> None:
    base_url = f"http://127.0.0.1:{closed_port()}/v1"

    async def run() -> None:
        async with OpenAIChatModel("gpt-4o-mini", base_url=base_url, api_key=SECRET) as model:
            await model.check()

    start = time.monotonic()
    with pytest.raises(FatalLLMError, match="cannot reach") as info:
        asyncio.run(run())
    assert time.monotonic() - start < 1.0
    assert base_url in str(info.value) and "connection refused" in str(info.value)
    assert SECRET not in error_texts(info.value)


def run_check(base_url: str) -> None:
    async def run() -> None:
        async with make_model(base_url) as model:
            await model.check()

    asyncio.run(run())


def test_check_passes_on_a_working_endpoint(fake: FakeOpenAI) -> None:
    run_check(fake.base_url)
    [seen] = fake.requests
    assert seen.body["max_tokens"] == 1


@pytest.mark.parametrize(
    ("failure", "expected"),
    [
        (status(401), "rejected the API key"),
        (status(404, body={"error": {"message": "model 'gpt-x' not found"}}), "has no model"),
    ],
    ids=["401", "404"],
)
def test_check_endpoint_failures_are_fatal_without_retries(
    fake: FakeOpenAI, failure: Reply, expected: str
) -> None:
    fake.queue(failure)
    with pytest.raises(EndpointError, match=expected):
        run_check(fake.base_url)
    assert len(fake.requests) == 1


@pytest.mark.parametrize(
    "failure",
    [status(500), status(503), Reply("hang", delay=TIMEOUT * 2), Reply("invalid_json")],
    ids=["500", "503", "hang", "invalid-json"],
)
def test_check_retries_a_transient_failure(fake: FakeOpenAI, failure: Reply) -> None:
    fake.queue(failure, failure)  # FAST allows 4 attempts: two failures, then the default answer
    run_check(fake.base_url)
    assert len(fake.requests) == 3


def test_check_gives_up_when_the_retries_run_out(fake: FakeOpenAI) -> None:
    fake.queue(*[status(500)] * 5)
    with pytest.raises(EndpointError, match="HTTP 500.*gave up after 4 attempts"):
        run_check(fake.base_url)
    assert len(fake.requests) == 4  # FAST.max_attempts


def test_check_unreachable_fails_fast_whatever_the_retry_policy() -> None:
    base_url = f"http://127.0.0.1:{closed_port()}/v1"

    async def run() -> None:
        async with make_model(base_url, retry=RetryPolicy(max_attempts=3, base_delay=0.01)) as model:
            await model.check()

    with pytest.raises(EndpointError, match="cannot reach .*connection refused") as info:
        asyncio.run(run())
    assert "gave up" not in str(info.value)  # not retried: nothing is listening


def test_check_passes_when_only_rate_limited(fake: FakeOpenAI) -> None:
    fake.queue(status(429, headers={"Retry-After": "0"}))
    run_check(fake.base_url)
    assert len(fake.requests) == 1


# ---------------------------------------------------------------------------------------------- cache


def test_cache_hit_makes_no_request(fake: FakeOpenAI, tmp_path: Path) -> None:
    path = tmp_path / "cache" / "responses.sqlite"
    fake.queue(text("first", usage=(1000, 200)), text("second"), text("third"))
    with ResponseCache(path) as cache:
        [fresh] = chat_once(fake.base_url, cache=cache, metadata={"task_id": "T1"})
        [hit] = chat_once(fake.base_url, cache=cache, metadata={"task_id": "T1"})
        [other] = chat_once(fake.base_url, cache=cache, metadata={"task_id": "T2"})
    assert len(fake.requests) == 2  # the second call was served from the cache
    assert fresh.usage is not None and not fresh.usage.cached and fresh.usage.cost > 0
    assert hit.content == "first"
    assert hit.usage == Usage(prompt_tokens=1000, completion_tokens=200, cost=0.0, cached=True)
    assert other.content == "second"  # metadata is part of the key
    with ResponseCache(path) as reopened:  # it persists on disk
        [again] = chat_once(fake.base_url, cache=reopened, metadata={"task_id": "T1"})
    assert again.content == "first" and len(fake.requests) == 2


def test_corrupt_cache_file_is_a_miss(
    fake: FakeOpenAI, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "responses.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with caplog.at_level(logging.WARNING), ResponseCache(path) as cache:
        assert not cache.enabled
        [reply] = chat_once(fake.base_url, cache=cache)
    assert reply.content == "hello" and len(fake.requests) == 1
    assert "response cache" in caplog.text


def test_unreadable_cache_entry_is_a_miss(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "responses.sqlite"
    with ResponseCache(path) as cache:
        cache.put("good", [AssistantMessage(content="x", usage=Usage(prompt_tokens=3, cost=1.0))])
    with sqlite3.connect(path) as conn:
        conn.execute("INSERT INTO responses VALUES ('bad', '{not json', 0)")
    with caplog.at_level(logging.WARNING), ResponseCache(path) as cache:
        assert cache.get("bad") is None
        assert cache.get("missing") is None
        [good] = cache.get("good") or []
    assert good.usage == Usage(prompt_tokens=3, cost=0.0, cached=True)
    assert "unreadable" in caplog.text


def test_cache_key_is_canonical() -> None:
    assert ResponseCache.make_key({"a": 1, "b": [1, 2]}) == ResponseCache.make_key({"b": [1, 2], "a": 1})
    assert ResponseCache.make_key({"a": 1}) != ResponseCache.make_key({"a": 2})


def test_cache_is_thread_safe(tmp_path: Path) -> None:
    # What each thread read back (or the exception it met) is checked here, in the test's own thread: an
    # assert inside a worker thread would only print a warning and never fail the test.
    read_back: dict[str, list[str]] = {}
    failures: list[BaseException] = []
    with ResponseCache(tmp_path / "c.sqlite") as cache:

        def work(i: int) -> None:
            try:
                for j in range(20):
                    cache.put(f"{i}-{j}", [AssistantMessage(content=f"{i}-{j}")])
                    read_back[f"{i}-{j}"] = [m.content for m in cache.get(f"{i}-{j}") or []]
            except BaseException as exc:  # handed to the test's thread
                failures.append(exc)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert failures == []
        # 8 threads x 20 keys = 160 entries, each read back as the one message written under it
        assert read_back == {f"{i}-{j}": [f"{i}-{j}"] for i in range(8) for j in range(20)}
        assert [m.content for m in cache.get("7-19") or []] == ["7-19"]


# ---------------------------------------------------------------------------------------------- concurrency


def test_concurrency_is_bounded(fake: FakeOpenAI) -> None:
    fake.default = text("slow", delay=0.2)

    async def run() -> list[list[AssistantMessage]]:
        async with make_model(fake.base_url, max_concurrency=2) as model:
            calls = [model.chat([UserMessage(content=f"q{i}")]) for i in range(6)]
            return await asyncio.gather(*calls)

    results = asyncio.run(run())
    assert len(results) == 6 and all(reply.content == "slow" for [reply] in results)
    assert len(fake.requests) == 6
    assert fake.max_in_flight == 2


# ---------------------------------------------------------------------------------------------- units


def test_retry_policy_delays() -> None:
    policy = RetryPolicy(base_delay=1.0, factor=2.0, max_delay=30.0, max_retry_after=60.0)
    for attempt, cap in [(1, 1.0), (2, 2.0), (3, 4.0), (6, 30.0), (500, 30.0)]:
        delays = [policy.delay(attempt) for _ in range(200)]
        assert all(0.0 <= d <= cap for d in delays)
        assert max(delays) > cap / 2  # full jitter spreads over the whole range
    # Full jitter, worked out by hand: the wait is uniform(0, cap) = cap * u, where u is the rng's next
    # random(); random.Random(0) draws u = 0.8444218515250481, 0.7579544029403025, 0.420571580830845.
    u0 = 0.8444218515250481
    assert policy.delay(1, rng=random.Random(0)) == pytest.approx(1.0 * u0)  # cap 1 * 2**0
    assert policy.delay(3, rng=random.Random(0)) == pytest.approx(4.0 * u0)  # cap 1 * 2**2
    assert policy.delay(6, rng=random.Random(0)) == pytest.approx(30.0 * u0)  # 2**5 = 32, capped at 30
    assert policy.delay(0, rng=random.Random(0)) == pytest.approx(1.0 * u0)  # no negative exponent
    rng = random.Random(0)
    drawn = [policy.delay(attempt, rng=rng) for attempt in (1, 2, 3)]
    assert drawn == pytest.approx([1 * 0.8444218515250481, 2 * 0.7579544029403025, 4 * 0.420571580830845])
    other = RetryPolicy(base_delay=0.5, factor=3.0, max_delay=10.0)
    assert other.delay(3, rng=random.Random(0)) == pytest.approx(4.5 * u0)  # cap 0.5 * 3**2 = 4.5
    assert other.delay(4, rng=random.Random(0)) == pytest.approx(10.0 * u0)  # 0.5 * 27 = 13.5 -> 10
    assert policy.delay(3, retry_after=7.0) == 7.0
    assert policy.delay(3, retry_after=0.0) == 0.0
    assert policy.delay(3, retry_after=600.0) == 60.0
    assert RetryPolicy().max_attempts == 6
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)


def test_retry_after_header_parsing() -> None:
    assert retry_after_seconds({"retry-after": "3"}) == 3.0
    assert retry_after_seconds({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert retry_after_seconds({}) is None and retry_after_seconds(None) is None
    assert retry_after_seconds({"retry-after": "soon"}) is None
    in_ten = retry_after_seconds({"retry-after": formatdate(time.time() + 10, usegmt=True)})
    assert in_ten is not None and 5 < in_ten <= 11


def test_pricing() -> None:
    assert price_for("gpt-4o") == (2.50, 10.00)
    assert price_for("gpt-4o-2024-08-06") == (2.50, 10.00)
    assert price_for("gpt-4o-mini-2024-07-18") == (0.15, 0.60)
    assert price_for("gpt-5-nano-2025-08-07") == (0.05, 0.40)
    assert price_for("gpt-4.1-mini") == (0.40, 1.60)
    assert price_for("openai/o4-mini") == (1.10, 4.40)
    assert price_for("gpt-50") is None and price_for("Qwen/Qwen3-8B") is None
    assert cost("gpt-4o-mini", 1_000_000, 1_000_000) == pytest.approx(0.75)
    assert cost("Qwen/Qwen3-8B", 1000, 1000) is None  # unpriced, not free
    assert cost("Qwen/Qwen3-8B", 1_000_000, 0, price_override=(0.5, 1.0)) == pytest.approx(0.5)
    for ours in ("josh-mock-agent", "josh-mock-user", "scripted"):
        assert cost(ours, 1_000_000, 1_000_000) == 0.0


def test_classify_parse_failures_and_unknowns() -> None:
    bad_json = json.JSONDecodeError("Expecting value", "<html>", 0)
    assert isinstance(classify(bad_json, base_url="http://x/v1"), RetryableLLMError)
    unknown = classify(RuntimeError(f"weird {SECRET}"), api_key=SECRET)
    assert isinstance(unknown, FatalLLMError) and SECRET not in str(unknown)
    already = FatalLLMError("kept")
    assert classify(already) is already


# ---------------------------------------------------------------------------------------------- message order

LLAMA_REFUSAL = "Cannot have 2 or more assistant messages at the end of the list."


def refuse_two_trailing_assistants(body: dict[str, Any]) -> Reply | None:
    """llama.cpp's rule (tools/server: a request may end with at most one assistant message, the prefill)."""
    roles = [message["role"] for message in body["messages"]]
    if roles[-2:] == ["assistant", "assistant"]:
        return status(
            400, body={"error": {"code": 400, "message": LLAMA_REFUSAL, "type": "invalid_request_error"}}
        )
    return None


REACT_RETRY = [
    SystemMessage(content="You are an agent."),
    UserMessage(content="book a train"),
    AssistantMessage(content="Thought: I should search."),
    AssistantMessage(content="ERROR: NO COMMAND FOUND"),
]


def test_refused_trailing_assistant_messages_are_sent_as_one_user_message(fake: FakeOpenAI) -> None:
    fake.rule = refuse_two_trailing_assistants
    one_try = RetryPolicy(max_attempts=1)  # the repeat after the refusal is not a retry

    async def run() -> tuple[OpenAIChatModel, list[AssistantMessage]]:
        async with make_model(fake.base_url, retry=one_try, model="local") as model:
            [first] = await model.chat(REACT_RETRY)
            [second] = await model.chat(REACT_RETRY[:3])  # one trailing assistant message: adapted too
            [third] = await model.chat(REACT_RETRY[:2])  # none: unchanged
            return model, [first, second, third]

    model, replies = asyncio.run(run())
    assert [reply.content for reply in replies] == ["hello"] * 3
    bodies = [seen.body["messages"] for seen in fake.requests]
    assert len(bodies) == 4
    assert bodies[0] == [to_wire(message) for message in REACT_RETRY]  # the paper's order, tried first
    assert bodies[1] == [
        {"role": "system", "content": "You are an agent."},
        {"role": "user", "content": "book a train"},
        {"role": "user", "content": "Thought: I should search.\nERROR: NO COMMAND FOUND"},
    ]
    assert bodies[2] == [
        {"role": "system", "content": "You are an agent."},
        {"role": "user", "content": "book a train"},
        {"role": "user", "content": "Thought: I should search."},
    ]
    assert bodies[3] == [
        {"role": "system", "content": "You are an agent."},
        {"role": "user", "content": "book a train"},
    ]
    assert model.trailing_assistant == "as_user"
    assert model.adaptations == [
        "trailing assistant messages sent as one user message: the server refused them "
        f"(HTTP 400: {LLAMA_REFUSAL})"
    ]


def test_trailing_assistant_as_user_from_the_start_and_the_cache_key_is_the_callers(
    fake: FakeOpenAI, tmp_path: Path
) -> None:
    with ResponseCache(tmp_path / "c.sqlite") as cache:
        [adapted] = chat_once(fake.base_url, REACT_RETRY, cache=cache, trailing_assistant="as_user")
        [again] = chat_once(fake.base_url, REACT_RETRY, cache=cache)  # "keep": same caller messages, a hit
    assert adapted.content == again.content == "hello"
    assert again.usage is not None and again.usage.cached
    [seen] = fake.requests
    assert seen.body["messages"][-1] == {
        "role": "user",
        "content": "Thought: I should search.\nERROR: NO COMMAND FOUND",
    }


def test_a_refusal_with_nothing_to_adapt_is_fatal(fake: FakeOpenAI) -> None:
    fake.queue(status(400, body={"error": {"message": LLAMA_REFUSAL}}))

    async def run() -> OpenAIChatModel:
        async with make_model(fake.base_url) as model:
            with pytest.raises(FatalLLMError, match="refused the order of the messages"):
                await model.chat(REACT_RETRY[:2])  # ends with a user message
            return model

    model = asyncio.run(run())
    assert len(fake.requests) == 1
    assert model.adaptations == [] and model.trailing_assistant == "keep"


def test_trailing_as_user_folds_only_plain_trailing_assistant_messages() -> None:
    call = {"role": "assistant", "content": "", "tool_calls": [{"id": "c"}]}
    wire = [{"role": "user", "content": "u"}, call, {"role": "assistant", "content": "a"}]
    assert trailing_as_user(wire) == [
        {"role": "user", "content": "u"},
        call,
        {"role": "user", "content": "a"},
    ]
    assert trailing_as_user(wire[:2]) == wire[:2]
    with pytest.raises(ValueError, match="trailing_assistant"):
        OpenAIChatModel("m", base_url="http://127.0.0.1:9/v1", trailing_assistant="drop")  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- model list


def list_models(base_url: str, **kwargs: Any) -> list[str]:
    async def run() -> list[str]:
        async with make_model(base_url, **kwargs) as model:
            return await model.list_models()

    return asyncio.run(run())


def test_list_models(fake: FakeOpenAI) -> None:
    fake.queue(status(503))  # retried like a chat request
    assert list_models(fake.base_url) == ["model-a", "model-b"]
    assert [seen.path for seen in fake.requests] == ["/v1/models", "/v1/models"]


def test_list_models_errors_are_classified(fake: FakeOpenAI) -> None:
    fake.queue(status(401))
    with pytest.raises(EndpointError, match="rejected the API key"):
        list_models(fake.base_url)
    unreachable = f"http://127.0.0.1:{closed_port()}/v1"
    # a start-up check: a refused connection fails at once (nothing is listening), as the preflight does
    with pytest.raises(UnreachableError, match="connection refused") as info:
        list_models(unreachable, retry=RetryPolicy(max_attempts=2, base_delay=0.01))
    assert "gave up" not in str(info.value)
    fake.queue(status(503), status(503))  # what the server answers is retried, then ends the check
    with pytest.raises(EndpointError, match="gave up after 2"):
        list_models(fake.base_url, retry=RetryPolicy(max_attempts=2, base_delay=0.01))


def test_list_models_of_the_mock_endpoint(toolwoz_env: Any) -> None:
    from josh.mock import MockServer

    with MockServer(toolwoz_env) as mock:
        assert list_models(mock.base_url) == ["josh-mock-agent", "josh-mock-user"]


# ---------------------------------------------------------------------------------------------- prices


def test_unknown_model_is_unpriced_and_cached_replies_are_free(fake: FakeOpenAI, tmp_path: Path) -> None:
    with ResponseCache(tmp_path / "c.sqlite") as cache:
        [fresh] = chat_once(fake.base_url, cache=cache, model="local")
        [hit] = chat_once(fake.base_url, cache=cache, model="local")
    assert fresh.usage == Usage(prompt_tokens=1000, completion_tokens=200, cost=None)
    assert hit.usage == Usage(prompt_tokens=1000, completion_tokens=200, cost=0.0, cached=True)
    [priced] = chat_once(fake.base_url, model="local", price_override=(1.0, 2.0))
    assert priced.usage is not None and priced.usage.cost == pytest.approx((1000 * 1.0 + 200 * 2.0) / 1e6)


def test_usage_sum_is_unpriced_when_any_part_is() -> None:
    assert (Usage(prompt_tokens=1, cost=0.5) + Usage(completion_tokens=2, cost=0.25)) == Usage(
        prompt_tokens=1, completion_tokens=2, cost=0.75
    )
    assert (Usage(prompt_tokens=1, cost=0.5) + Usage(cost=None)).cost is None
    assert (Usage(cost=None) + Usage(cost=0.5)).cost is None
    assert Usage().cost == 0.0  # no calls cost nothing


# ---------------------------------------------------------------------------------------------- hostile replies


@pytest.mark.parametrize(
    ("raw", "replayed"),
    [
        # The JSON escape in the arguments text: the text is ASCII, the parsed value holds the surrogate.
        ('{"name": "caf\\ud800"}', '{"name": "caf\\ud800"}'),
        # The surrogate itself in the arguments text: UTF-8 cannot carry it, so it is replaced on the wire.
        ('{"name": "caf\ud800"}', '{"name": "caf\ufffd"}'),
    ],
    ids=["escaped", "raw"],
)
def test_lone_surrogate_in_arguments_round_trips_through_the_cache(
    fake: FakeOpenAI, tmp_path: Path, raw: str, replayed: str
) -> None:
    fake.queue(tool("find_restaurant", raw))
    with ResponseCache(tmp_path / "c.sqlite") as cache:
        [fresh] = chat_once(fake.base_url, cache=cache, tools=TOOLS)
        [hit] = chat_once(fake.base_url, cache=cache, tools=TOOLS)
        assert cache.enabled
        # The history now holds the lone surrogate; the next request must still go out.
        history: list[Any] = [
            UserMessage(content="hi"),
            fresh,
            ToolMessage(tool_call_id="call_1", content="{}"),
        ]
        [after] = chat_once(fake.base_url, history, cache=cache, tools=TOOLS)
        [after_hit] = chat_once(fake.base_url, history, cache=cache, tools=TOOLS)
    [call] = fresh.tool_calls
    assert call.arguments == {"name": "caf\ud800"} and call.raw_arguments == raw
    assert hit.tool_calls == fresh.tool_calls and hit.usage is not None and hit.usage.cached
    assert after.content == after_hit.content == "hello"
    assert len(fake.requests) == 2
    sent = fake.requests[1].body["messages"][1]["tool_calls"][0]["function"]["arguments"]
    assert sent == replayed


def test_arguments_nested_hundreds_deep(fake: FakeOpenAI, tmp_path: Path) -> None:
    raw = '{"a": ' * 300 + "1" + "}" * 300
    fake.queue(tool("get_booking", raw))
    with ResponseCache(tmp_path / "c.sqlite") as cache:
        [fresh] = chat_once(fake.base_url, cache=cache, tools=TOOLS)
        [hit] = chat_once(fake.base_url, cache=cache, tools=TOOLS)
    [call] = fresh.tool_calls
    assert call.raw_arguments == raw and call.parse_error is None  # replayed verbatim
    value: Any = call.arguments
    for _ in range(MAX_DEPTH):
        assert isinstance(value, dict) and list(value) == ["a"]
        value = value["a"]
    assert value == TOO_DEEP
    assert fresh.model_dump(mode="json")["tool_calls"][0]["raw_arguments"] == raw
    assert hit.tool_calls == fresh.tool_calls and len(fake.requests) == 1


def test_shallow_arguments_are_not_cut() -> None:
    nested = {"a": {"b": [1, {"c": "d"}]}}
    call = parse_tool_call({"id": "x", "function": {"name": "f", "arguments": json.dumps(nested)}})
    assert call.arguments == nested


def test_empty_tool_calls_list_is_recorded(fake: FakeOpenAI, tmp_path: Path) -> None:
    fake.queue(text("I will look it up.", tool_calls=[]))
    with ResponseCache(tmp_path / "c.sqlite") as cache:
        [fresh] = chat_once(fake.base_url, cache=cache)
        [hit] = chat_once(fake.base_url, cache=cache)
        [plain] = chat_once(fake.base_url, cache=cache, metadata={"task_id": "T2"})
    assert fresh.empty_tool_calls and fresh.tool_calls == () and fresh.content == "I will look it up."
    assert hit.empty_tool_calls and hit.usage is not None and hit.usage.cached
    assert fresh.model_dump(mode="json")["empty_tool_calls"] is True
    assert not plain.empty_tool_calls
    assert "empty_tool_calls" not in plain.model_dump(mode="json")  # records do not grow a field
    assert "empty_tool_calls" not in plain.model_dump()
