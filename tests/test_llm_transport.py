"""josh's thin HTTP client (`josh.llm.openai_compat.transport`) against raw asyncio servers on 127.0.0.1: what
the servers josh meets answer (keep-alive, chunked bodies, connections closed between requests), and errors
classified as the SDK's are."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from josh.llm import OpenAIChatModel, RetryableLLMError, RetryPolicy
from josh.llm.openai_compat.errors import classify, retry_after
from josh.llm.openai_compat.transport import uses_proxy
from josh.types import UserMessage

COMPLETION = {
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1},
}
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, dict[str, Any]], Awaitable[bool]]


async def _read_request(reader: asyncio.StreamReader) -> bytes | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    length = 0
    for line in head.decode().split("\r\n"):
        if line.lower().startswith("content-length:"):
            length = int(line.split(":")[1])
    return head + await reader.readexactly(length)


async def serve(handler: Handler) -> tuple[asyncio.Server, str, dict[str, Any]]:
    """A server that reads requests and lets `handler` answer each; `handler` returns False to close."""
    state: dict[str, Any] = {"connections": 0, "requests": []}

    async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        state["connections"] += 1
        while (request := await _read_request(reader)) is not None:
            state["requests"].append(request)
            if not await handler(reader, writer, state):
                break
        writer.close()

    server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    return server, f"http://127.0.0.1:{port}/v1", state


def response(status: int, body: bytes, *headers: str) -> bytes:
    lines = [f"HTTP/1.1 {status} X", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def ask(url: str, **options: Any) -> str:
    async def run() -> str:
        async with OpenAIChatModel("m", base_url=url, retry=RetryPolicy(max_attempts=1), **options) as model:
            first = await model.chat([UserMessage(content="a")])
            second = await model.chat([UserMessage(content="b")])
            return first[0].content + second[0].content

    return asyncio.run(run())


def test_keep_alive_connections_are_reused_and_chunked_bodies_read() -> None:
    data = json.dumps(COMPLETION).encode()
    chunked = b"%x\r\n%s\r\n0\r\n\r\n" % (len(data), data)

    async def run() -> tuple[str, int]:
        async def handler(reader: Any, writer: asyncio.StreamWriter, state: dict[str, Any]) -> bool:
            writer.write(response(200, chunked, "Transfer-Encoding: chunked"))
            return True

        server, url, state = await serve(handler)
        async with server, OpenAIChatModel("m", base_url=url) as model:
            replies = [await model.chat([UserMessage(content=str(i))]) for i in range(3)]
        return "".join(r[0].content for r in replies), state["connections"]

    text, connections = asyncio.run(run())
    assert text == "hihihi"
    assert connections == 1


def test_a_kept_connection_the_server_closed_is_replaced_without_a_retry() -> None:
    data = json.dumps(COMPLETION).encode()

    async def run() -> tuple[str, dict[str, Any]]:
        async def handler(reader: Any, writer: asyncio.StreamWriter, state: dict[str, Any]) -> bool:
            # Says keep-alive, then closes: the next request on it meets a closed connection.
            writer.write(response(200, data, f"Content-Length: {len(data)}"))
            await writer.drain()
            return False

        server, url, state = await serve(handler)
        async with server:
            # one attempt only: a resent request must not count as a retry
            text = await asyncio.to_thread(ask, url)
        return text, state

    text, state = asyncio.run(run())
    assert text == "hihi"
    assert len(state["requests"]) == 2


def test_a_body_that_ends_with_the_connection_is_read() -> None:
    data = json.dumps(COMPLETION).encode()

    async def run() -> str:
        async def handler(reader: Any, writer: asyncio.StreamWriter, state: dict[str, Any]) -> bool:
            writer.write(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + data)
            return False

        server, url, _ = await serve(handler)
        async with server:
            return await asyncio.to_thread(ask, url)

    assert asyncio.run(run()) == "hihi"


@pytest.mark.parametrize("transport", ["direct", "sdk"])
def test_both_transports_raise_what_errors_classifies_alike(transport: str) -> None:
    body = json.dumps({"error": {"message": "slow down", "type": "rate"}}).encode()

    async def run() -> BaseException:
        async def handler(reader: Any, writer: asyncio.StreamWriter, state: dict[str, Any]) -> bool:
            writer.write(response(429, body, f"Content-Length: {len(body)}", "Retry-After: 7"))
            return True

        server, url, _ = await serve(handler)
        async with server:
            model = OpenAIChatModel("m", base_url=url, transport=transport)  # type: ignore[arg-type]
            try:
                await model._send({"model": "m", "messages": []}, {})
            except Exception as exc:  # noqa: BLE001 - the SDK's exception is what is checked
                return exc
            finally:
                await model.aclose()
        raise AssertionError("no error")

    failure = asyncio.run(run())
    error = classify(failure, base_url="http://h/v1", model="m")
    assert isinstance(error, RetryableLLMError)
    assert "rate limiting requests (HTTP 429: slow down)" in str(error)
    assert retry_after(failure) == 7


def test_a_proxy_from_the_environment_sends_through_the_sdk(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.invalid:3128")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    assert uses_proxy("https://api.example.com/v1")
    assert not uses_proxy("http://127.0.0.1:8000/v1")
    assert OpenAIChatModel("m", base_url="https://api.example.com/v1").transport == "sdk"
    assert OpenAIChatModel("m", base_url="http://127.0.0.1:8000/v1").transport == "direct"
