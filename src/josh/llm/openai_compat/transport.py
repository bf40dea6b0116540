"""`DirectTransport`: a thin HTTP/1.1 client over asyncio streams, for the JSON requests of an OpenAI-compatible
server, with keep-alive connections to one server.

Why not the openai SDK (or httpx, which the SDK runs on): their request handling costs ~2 ms of CPU a call
(`bench/josh_orchestration.py` measures it), which caps one process near 500 calls/s whatever the fleet serves;
this costs ~0.2 ms. It speaks only what josh sends and the servers answer (one JSON body each way,
Content-Length or chunked responses, no compression, no proxy: a model whose URL goes through a proxy from the
environment uses the SDK, see `uses_proxy`).

Failures are raised as the SDK's own exceptions (`openai.APIStatusError` and its subclasses by status,
`openai.APIConnectionError`, `openai.APITimeoutError`), built as the SDK builds them, so that
`josh.llm.openai_compat.errors` classifies both transports alike.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import urllib.request
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx
import openai
from openai import _exceptions as sdk_exceptions

from josh import __version__
from josh.llm.openai_compat.wire_memo import request_json

# The HTTP library the installed SDK builds its exceptions' requests and responses with (httpx2 from openai 3).
_SDK_HTTP: Any = getattr(sdk_exceptions, "httpx2", None) or getattr(sdk_exceptions, "httpx", httpx)
_STATUS_ERRORS: dict[int, type[openai.APIStatusError]] = {
    400: openai.BadRequestError,
    401: openai.AuthenticationError,
    403: openai.PermissionDeniedError,
    404: openai.NotFoundError,
    409: openai.ConflictError,
    422: openai.UnprocessableEntityError,
    429: openai.RateLimitError,
}
_HEADER_LIMIT = 1 << 20  # bytes of a status line plus headers, at most
_MAX_IDLE = 256  # idle keep-alive connections kept, at most


class ConnectError(OSError):
    """The connection could not be made (`errors.cannot_connect` looks for this name in an error's chain)."""


class _StaleConnection(Exception):
    """A reused keep-alive connection was closed by the server before it answered: send again, fresh."""


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]  # lower-cased names
    body: bytes


def uses_proxy(url: str) -> bool:
    """Whether the environment (HTTP_PROXY, HTTPS_PROXY, ALL_PROXY, NO_PROXY) sends requests to `url` through
    a proxy, which `DirectTransport` does not speak."""
    parts = urlsplit(url)
    proxies = urllib.request.getproxies_environment()
    if not (proxies.get(parts.scheme) or proxies.get("all")):
        return False
    return not urllib.request.proxy_bypass_environment(parts.hostname or "", proxies)


class _Connection:
    __slots__ = ("reader", "writer", "loop")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.loop = asyncio.get_running_loop()

    def close(self) -> None:
        with contextlib.suppress(RuntimeError):  # its event loop is closed already
            self.writer.close()


class DirectTransport:
    """Keep-alive HTTP/1.1 connections to the server of `base_url` (http or https).

    `request` sends one request with a JSON body (or none) and returns the response's JSON; an HTTP error
    status, a connection that fails, or `timeout` running out raise the SDK's exceptions.
    """

    def __init__(self, base_url: str, headers: dict[str, str]) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self.base_url = base_url.rstrip("/")
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._ssl: ssl.SSLContext | None = _ssl_context() if parts.scheme == "https" else None
        self._path = parts.path.rstrip("/")
        host = f"[{self._host}]" if ":" in self._host else self._host
        default_port = self._port == (443 if self._ssl else 80)
        lines = [f"Host: {host if default_port else f'{host}:{self._port}'}"]
        lines += [
            "Accept: application/json",
            "Accept-Encoding: identity",
            f"User-Agent: josh/{__version__}",
        ]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self._fixed = "\r\n".join(lines)
        self._idle: list[_Connection] = []

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        timeout: float,
    ) -> Any:
        """The JSON of the answer to `method` `base_url + path` with `body` as JSON (None: no body)."""
        data = b"" if body is None else request_json(body)
        head = [f"{method} {self._path}{path} HTTP/1.1", self._fixed]
        if body is not None:
            head.append("Content-Type: application/json")
        if body is not None or method not in ("GET", "HEAD"):
            head.append(f"Content-Length: {len(data)}")
        head += [f"{name}: {value}" for name, value in (headers or {}).items()]
        message = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1", "replace") + data
        try:
            async with asyncio.timeout(timeout):
                try:
                    response = await self._exchange(message, reused=True)
                except _StaleConnection:
                    response = await self._exchange(message, reused=False)
        except TimeoutError as exc:
            raise openai.APITimeoutError(request=self._sdk_request(method, path)) from exc
        except (
            OSError,
            asyncio.IncompleteReadError,
            asyncio.LimitOverrunError,
            _ProtocolError,
            ValueError,
        ) as exc:
            # ConnectError (an OSError) included: `errors` tells a connection never made by its name
            raise openai.APIConnectionError(request=self._sdk_request(method, path)) from exc
        if response.status >= 400:
            raise self._status_error(method, path, response)
        return json.loads(response.body)

    async def aclose(self) -> None:
        """Close the idle connections (requests in flight close theirs as they end)."""
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    async def _exchange(self, message: bytes, *, reused: bool) -> RawResponse:
        connection = self._take_idle() if reused else None
        if connection is None:
            reused = False
            connection = await self._connect()
        keep = False
        try:
            try:
                connection.writer.write(message)
                await connection.writer.drain()
                head = await connection.reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionResetError, BrokenPipeError) as exc:
                if reused and not getattr(exc, "partial", b""):
                    raise _StaleConnection from exc
                raise
            response, keep = await _read_response(head, connection.reader)
            return response
        finally:
            if keep and len(self._idle) < _MAX_IDLE:
                self._idle.append(connection)
            else:
                connection.close()

    def _take_idle(self) -> _Connection | None:
        loop = asyncio.get_running_loop()
        while self._idle:
            connection = self._idle.pop()
            if connection.loop is loop and not connection.reader.at_eof():
                return connection
            connection.close()  # closed by the server, or opened by an event loop that has ended
        return None

    async def _connect(self) -> _Connection:
        try:
            reader, writer = await asyncio.open_connection(
                self._host, self._port, ssl=self._ssl, limit=_HEADER_LIMIT
            )
        except (OSError, ssl.SSLError) as exc:
            raise ConnectError(str(exc) or type(exc).__name__) from exc
        return _Connection(reader, writer)

    def _sdk_request(self, method: str, path: str) -> Any:
        return _SDK_HTTP.Request(method, self.base_url + path)

    def _status_error(self, method: str, path: str, response: RawResponse) -> openai.APIStatusError:
        """The SDK's exception for an HTTP error status, with the message and body the SDK would give it."""
        text = response.body.decode("utf-8", "replace").strip()
        message = f"Error code: {response.status}"
        body: Any = text
        try:
            body = json.loads(text)
        except ValueError:
            pass
        else:
            error = body.get("error", body) if isinstance(body, dict) else None
            detail = error.get("message") if isinstance(error, dict) else None
            if isinstance(detail, str) and detail:
                message += f" - {detail}"
        sdk_response = _SDK_HTTP.Response(
            response.status,
            headers=list(response.headers.items()),
            content=response.body,
            request=self._sdk_request(method, path),
        )
        data = body.get("error", body) if isinstance(body, dict) else body
        error_type = _STATUS_ERRORS.get(response.status)
        if error_type is None:
            error_type = openai.InternalServerError if response.status >= 500 else openai.APIStatusError
        return error_type(message, response=sdk_response, body=data)


class _ProtocolError(Exception):
    """The server's answer is not HTTP/1.x as this client reads it."""


async def _read_response(head: bytes, reader: asyncio.StreamReader) -> tuple[RawResponse, bool]:
    """Read the body of a response whose status line and headers are `head`; also whether the connection
    may be kept."""
    status_line, *lines = head.decode("latin-1").split("\r\n")
    parts = status_line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise _ProtocolError(f"not an HTTP/1 status line: {status_line[:80]!r}")
    version, status = parts[0], int(parts[1])
    headers: dict[str, str] = {}
    for line in lines:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    connection = headers.get("connection", "").lower()
    keep = "close" not in connection if version == "HTTP/1.1" else "keep-alive" in connection
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = await _read_chunked(reader)
    elif "content-length" in headers:
        body = await reader.readexactly(int(headers["content-length"]))
    elif status in (204, 304) or 100 <= status < 200:
        body = b""
    else:
        body, keep = await reader.read(), False  # the body ends when the server closes the connection
    return RawResponse(status, headers, body), keep


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    chunks = []
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers, then the blank line
                pass
            return b"".join(chunks)
        chunks.append(await reader.readexactly(size))
        await reader.readexactly(2)


def _ssl_context() -> ssl.SSLContext:
    """TLS with certifi's roots when installed (as httpx does), else the system's."""
    try:
        import certifi
    except ImportError:
        return ssl.create_default_context()
    return ssl.create_default_context(cafile=certifi.where())
