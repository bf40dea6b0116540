"""The mock endpoint's HTTP server: OpenAI's `/v1/chat/completions` on 127.0.0.1 only, on an event loop in a
thread."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import Callable
from http import HTTPStatus
from typing import Any

from josh.llm import event_loop
from josh.mock.policies import (
    MODEL_NAMES,
    InjectedServerError,
    MockConfig,
    MockRequestError,
    MockScript,
    ScriptedToolWOZ,
    toolwoz_script,
)

log = logging.getLogger(__name__)
HOST = "127.0.0.1"  # never another interface: this is a test double, not a service


_MAX_HEADERS = 100  # as http.server
_PHRASES = {status.value: status.phrase for status in HTTPStatus}


class _BadRequest(Exception):
    """A request line or header block the server cannot read (HTTP 400, then the connection is closed)."""


def _json(status: int, payload: Any, *, close: bool = False) -> bytes:
    """A whole response: status line, headers and the JSON body, for one write."""
    data = json.dumps(payload).encode()
    closing = "Connection: close\r\n" if close else ""
    head = (
        f"HTTP/1.1 {status} {_PHRASES.get(status, '')}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n{closing}\r\n"
    )
    return head.encode("latin-1") + data


def _error(status: int, message: str, kind: str, *, close: bool = False) -> bytes:
    return _json(status, {"error": {"message": message, "type": kind, "code": status}}, close=close)


def _parse_head(text: str) -> tuple[str, str, str, str, dict[str, str]]:
    """(request line, method, target, version, headers by lower-case name) of a request's head."""
    lines = text.split("\r\n")
    words = lines[0].split()
    if len(words) != 3 or not words[2].startswith("HTTP/"):
        raise _BadRequest(f"bad request line {lines[0][:100]!r}")
    headers: dict[str, str] = {}
    for raw in lines[1:]:
        if not raw:
            continue
        if len(headers) >= _MAX_HEADERS:
            raise _BadRequest(f"more than {_MAX_HEADERS} headers")
        name, colon, value = raw.partition(":")
        if not colon:
            raise _BadRequest(f"bad header line {raw[:100]!r}")
        headers[name.strip().lower()] = value.strip()
    return lines[0], words[0], words[1], words[2], headers


_HEAD_LIMIT = 1 << 16  # bytes of request line and headers, as asyncio's streams allow


class _Server:
    """HTTP/1.1 on an event loop of its own: one thread serves every connection (`_Connection`).

    Why not `http.server`'s thread per connection: with a run's dozens of connections, each held for the
    mock's latency, the threads' hand-offs of the GIL cost the mock more CPU than its policies (~0.9 ms a
    call, as much as josh's whole client side); here the latency is a timer. It speaks what OpenAI clients
    send: one request at a time on a connection, a Content-Length body, keep-alive.
    """

    def __init__(self, port: int, policy: ScriptedToolWOZ, reset_level: int = logging.DEBUG):
        self.policy = policy
        self.reset_level = reset_level
        self.socket = socket.create_server((HOST, port), backlog=1024)  # a concurrent eval's burst, not 5
        self.server_address: tuple[str, int] = self.socket.getsockname()[:2]
        self.connections: set[_Connection] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopped: asyncio.Event | None = None
        self._ready = threading.Event()

    # -- the loop -------------------------------------------------------------------------------------

    def serve_forever(self) -> None:
        """Serve in the calling thread until `shutdown` (or Ctrl-C)."""
        event_loop.run(self._serve(), precise_timers=True)  # the latency is a timer: on time, not ~1 ms late

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        server = await self._loop.create_server(lambda: _Connection(self), sock=self.socket, backlog=1024)
        self._ready.set()
        try:
            await self._stopped.wait()
        finally:
            server.close()
            held = [c.abort() for c in list(self.connections)]  # requests still held (a hang): long given up
            await asyncio.gather(*(task for task in held if task is not None), return_exceptions=True)

    def shutdown(self) -> None:
        """Stop `serve_forever` (from another thread) and wait until it has."""
        self._ready.wait(timeout=5)
        if self._loop is not None and self._stopped is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop ended meanwhile
                self._loop.call_soon_threadsafe(self._stopped.set)

    def server_close(self) -> None:
        self.socket.close()

    # -- one request ----------------------------------------------------------------------------------

    async def respond(
        self, method: str, target: str, headers: dict[str, str], raw: bytes, arrived: float
    ) -> tuple[int, bytes]:
        """The status and the whole response to one request."""
        path = target.rstrip("/")
        if method == "GET":
            if path in ("/v1/models", "/models"):
                models = [{"id": m, "object": "model", "owned_by": "josh-mock"} for m in MODEL_NAMES]
                return 200, _json(200, {"object": "list", "data": models})
            if path in ("/health", "/v1/health"):
                return 200, _json(200, {"status": "ok", "scripted": True})
            return 404, _error(404, f"no route {target}", "not_found")
        if method != "POST":
            return 501, _error(501, f"unsupported method {method!r}", "invalid_request_error")
        if path not in ("/v1/chat/completions", "/chat/completions"):
            return 404, _error(404, f"no route {target}; the mock serves /v1/chat/completions", "not_found")
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError as exc:
            return 400, _error(400, f"request body is not JSON: {exc}", "invalid_request_error")
        try:
            response = await self.policy.complete_async(body, headers, arrived=arrived)
        except MockRequestError as exc:
            return 400, _error(400, str(exc), "invalid_request_error")
        except InjectedServerError as exc:
            return 500, _error(500, str(exc), "server_error")
        except Exception as exc:  # a bug in the mock must not end the connection silently
            log.exception("mock endpoint failed")
            return 500, _error(500, f"mock endpoint error: {exc}", "server_error")
        return 200, _json(200, response)


class _Connection(asyncio.Protocol):
    """One client connection, read as its bytes come (an asyncio protocol, not streams).

    A request's arrival is when its first bytes are read, in the loop's reading of every socket that has
    data, before any request is decoded or answered: with streams, each connection's request was read only
    once the requests before it were decoded and their answers made, so in a step's burst of calls the last
    ones "arrived" ~1 ms late at 6 calls, and their latency with them. Each request is answered by a task
    (the policy awaits its latency); the next request on the connection is read after the answer.
    """

    def __init__(self, server: _Server) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.peer: Any = None
        self.buffer = bytearray()
        self.arrived: float | None = None  # when the first bytes of the request being read came
        self.task: asyncio.Task[None] | None = None  # the request being answered

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.peer = transport.get_extra_info("peername")
        sock = transport.get_extra_info("socket")
        if sock is not None:  # the answer goes out in one write anyway; no 40 ms delayed-ACK stall
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.server.connections.add(self)

    def data_received(self, data: bytes) -> None:
        if self.arrived is None:
            self.arrived = time.perf_counter()
        self.buffer += data
        if self.task is None:
            self._next_request()

    def eof_received(self) -> bool:
        return False  # the client is done sending: close (after logging an unfinished request, below)

    def connection_lost(self, exc: Exception | None) -> None:
        self.server.connections.discard(self)
        pending = self.task is not None or bool(self.buffer.strip(b"\r\n"))
        if self.task is not None:
            self.task.cancel()
        if exc is not None or pending:
            # a client that went away (a hang past its timeout, a killed process): one line, no traceback
            name = type(exc).__name__ if exc is not None else "EOF"
            log.log(self.server.reset_level, "mock endpoint: client reset the connection (%s)", name)

    def abort(self) -> asyncio.Task[None] | None:
        """Close now (the server stops); the task of a request still held, cancelled."""
        task = self.task
        if task is not None:
            task.cancel()
        self.buffer.clear()
        self.task = None
        if self.transport is not None:
            self.transport.abort()
        return task

    def _next_request(self) -> None:
        """Take the next whole request from the buffer, if there is one, and start answering it."""
        assert self.transport is not None
        start = len(self.buffer) - len(self.buffer.lstrip(b"\r\n"))  # blank lines before a request
        end = self.buffer.find(b"\r\n\r\n", start)
        if end < 0:
            if len(self.buffer) > _HEAD_LIMIT:
                self._refuse(_error(400, "request headers too long", "invalid_request_error", close=True))
            elif start == len(self.buffer):
                self.buffer.clear()
                self.arrived = None
            return
        try:
            line, method, target, version, headers = _parse_head(self.buffer[start:end].decode("latin-1"))
        except _BadRequest as exc:
            self._refuse(_error(400, str(exc), "invalid_request_error", close=True))
            return
        try:
            length = int(headers.get("content-length") or 0)
        except ValueError:
            self._failed()
            return
        body_end = end + 4 + length
        if len(self.buffer) < body_end:
            return  # the rest of the body is still to come
        raw = bytes(self.buffer[end + 4 : body_end])
        del self.buffer[:body_end]
        arrived = self.arrived if self.arrived is not None else time.perf_counter()
        self.arrived = time.perf_counter() if self.buffer else None  # the next request's bytes came with it
        connection = headers.get("connection", "").lower()
        keep = "close" not in connection if version == "HTTP/1.1" else "keep-alive" in connection
        self.task = asyncio.get_running_loop().create_task(
            self._answer(line, method, target, headers, raw, arrived, keep)
        )

    async def _answer(
        self, line: str, method: str, target: str, headers: dict[str, str], raw: bytes, arrived: float, keep: bool
    ) -> None:
        assert self.transport is not None
        try:
            status, response = await self.server.respond(method, target, headers, raw, arrived)
        except Exception:  # not a cancellation (the connection lost, the server stopping): a BaseException
            self._failed()
            return
        finally:
            self.task = None
        if log.isEnabledFor(logging.DEBUG):
            log.debug('mock endpoint: "%s" %s -', line, status)
        if self.transport.is_closing():
            return
        self.transport.write(response)
        if not keep:
            self.transport.close()
        elif self.buffer:
            self._next_request()

    def _failed(self) -> None:
        """Log the exception being handled, with its traceback, and close the connection (a bug, or a request
        no client sends, such as a Content-Length that is not a number)."""
        assert self.transport is not None
        log.exception("mock endpoint: error while serving %s", self.peer)
        self.buffer.clear()
        self.transport.close()

    def _refuse(self, response: bytes) -> None:
        """Answer a request the server cannot read (HTTP 400) and close the connection."""
        assert self.transport is not None
        self.buffer.clear()
        self.transport.write(response)
        self.transport.close()


class MockServer:
    """The scripted mock endpoint, served from a background thread. Use as a context manager.

    A client that resets its connection or goes silent is logged in one line: at debug level with
    `quiet_resets` (in-process, e.g. a dry run that is interrupted), else at info level (`josh serve-mock`).
    """

    def __init__(
        self,
        env: Any,
        config: MockConfig | None = None,
        port: int = 0,
        *,
        quiet_resets: bool = True,
        script: Callable[[Any], MockScript] = toolwoz_script,
    ):
        self.policy = ScriptedToolWOZ(env, config, script=script)
        self._server = _Server(port, self.policy, logging.DEBUG if quiet_resets else logging.INFO)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}/v1"

    def start(self) -> MockServer:
        self._thread = threading.Thread(target=self._server.serve_forever, name="josh-mock", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread until interrupted."""
        self._server.serve_forever()

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()

    def __enter__(self) -> MockServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
