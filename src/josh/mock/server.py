"""The mock endpoint's HTTP server: OpenAI's `/v1/chat/completions` on 127.0.0.1 only, in a thread."""

from __future__ import annotations

import json
import logging
import sys
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

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


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as separate writes: no 40 ms delayed-ACK stall

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("mock endpoint: " + format, *args)

    def _send(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (a hang past its timeout)

    def _error(self, status: int, message: str, kind: str) -> None:
        self._send(status, {"error": {"message": message, "type": kind, "code": status}})

    def do_GET(self) -> None:
        if self.path.rstrip("/") in ("/v1/models", "/models"):
            self._send(
                200,
                {
                    "object": "list",
                    "data": [{"id": m, "object": "model", "owned_by": "josh-mock"} for m in MODEL_NAMES],
                },
            )
        elif self.path.rstrip("/") in ("/health", "/v1/health"):
            self._send(200, {"status": "ok", "scripted": True})
        else:
            self._error(404, f"no route {self.path}", "not_found")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self.path.rstrip("/") not in ("/v1/chat/completions", "/chat/completions"):
            self._error(404, f"no route {self.path}; the mock serves /v1/chat/completions", "not_found")
            return
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError as exc:
            self._error(400, f"request body is not JSON: {exc}", "invalid_request_error")
            return
        try:
            response = self.server.policy.complete(body, dict(self.headers.items()))
        except MockRequestError as exc:
            self._error(400, str(exc), "invalid_request_error")
            return
        except InjectedServerError as exc:
            self._error(500, str(exc), "server_error")
            return
        except Exception as exc:  # a bug in the mock must not kill the server thread silently
            log.exception("mock endpoint failed")
            self._error(500, f"mock endpoint error: {exc}", "server_error")
            return
        self._send(200, response)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = (
        1024  # socketserver's default backlog of 5 resets connections under a concurrent eval
    )

    def __init__(self, port: int, policy: ScriptedToolWOZ, reset_level: int = logging.DEBUG):
        self.policy = policy
        self.reset_level = reset_level
        super().__init__((HOST, port), _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """One log line for a client that went away (socketserver would print a traceback to stderr)."""
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError | TimeoutError):
            log.log(self.reset_level, "mock endpoint: client reset the connection (%s)", type(exc).__name__)
        else:
            log.exception("mock endpoint: error while serving %s", client_address)


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
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> MockServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
