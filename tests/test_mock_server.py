"""The mock endpoint's HTTP server: a client that goes away is one log line, never a traceback on stderr; held
requests share one event loop, and stopping it closes them."""

from __future__ import annotations

import logging
import socket
import struct
import threading
import time
from collections.abc import Iterator

import pytest

from josh.envs.toolwoz import ToolWOZEnvironment
from josh.mock import MockServer


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.seen = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        self.seen.set()


@pytest.fixture
def server_log() -> Iterator[Collect]:
    logger = logging.getLogger("josh.mock.server")
    handler, level = Collect(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def send_and_reset(port: int, data: bytes) -> None:
    """Send `data`, then reset the connection (SO_LINGER 0: close sends RST, as a killed client does)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))


HALF_REQUEST = b'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{"model": "jo'


@pytest.mark.parametrize(("quiet", "level"), [(True, logging.DEBUG), (False, logging.INFO)])
def test_a_client_reset_is_one_line_and_no_traceback(
    toolwoz_env: ToolWOZEnvironment,
    capfd: pytest.CaptureFixture[str],
    server_log: Collect,
    quiet: bool,
    level: int,
) -> None:
    with MockServer(toolwoz_env, quiet_resets=quiet) as mock:
        send_and_reset(mock.port, HALF_REQUEST)
        assert server_log.seen.wait(10), "the server logged nothing about the reset"
    assert [(r.levelno, r.getMessage()) for r in server_log.records] == [
        (level, "mock endpoint: client reset the connection (ConnectionResetError)")
    ]
    assert server_log.records[0].exc_info is None
    assert "Traceback" not in capfd.readouterr().err


def test_any_other_error_is_logged_once_with_its_traceback(
    toolwoz_env: ToolWOZEnvironment, capfd: pytest.CaptureFixture[str], server_log: Collect
) -> None:
    with MockServer(toolwoz_env) as mock:
        with socket.create_connection(("127.0.0.1", mock.port), timeout=10) as sock:
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: ten\r\n\r\n")
            assert sock.recv(100) == b""  # the server closes it after the error
        assert server_log.seen.wait(10)
    assert len(server_log.records) == 1
    record = server_log.records[0]
    assert record.levelno == logging.ERROR and record.getMessage().startswith(
        "mock endpoint: error while serving"
    )
    assert record.exc_info is not None and record.exc_info[0] is ValueError
    assert "Traceback" not in capfd.readouterr().err


def _held_post(port: int) -> socket.socket:
    body = b'{"messages": [{"role": "user", "content": "Hi!"}], "tools": [{"type": "function"}]}'
    sock = socket.create_connection(("127.0.0.1", port), timeout=10)
    sock.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Josh-Task-Id: MUL0001\r\n"
        b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    )
    return sock


def test_requests_held_at_once_take_no_thread_each(toolwoz_env: ToolWOZEnvironment) -> None:
    """The mock's latency is a timer on one event loop: a run's dozens of held connections cost no thread
    each (with a thread each, their hand-offs of the GIL cost the mock more CPU than its policies)."""
    from josh.mock import MockConfig

    with MockServer(toolwoz_env, MockConfig(latency_s=0.5)) as mock:
        before = threading.active_count()
        socks = [_held_post(mock.port) for _ in range(32)]
        try:
            time.sleep(0.2)  # every request read and held
            held = threading.active_count() - before
            started = time.monotonic()
            replies = [sock.recv(65536) for sock in socks]
            waited = time.monotonic() - started
        finally:
            for sock in socks:
                sock.close()
    assert held == 0
    assert all(reply.startswith(b"HTTP/1.1 200 OK\r\n") for reply in replies)
    assert waited < 1.0  # held together, not one after another


def test_stopping_does_not_wait_for_a_hanging_request(toolwoz_env: ToolWOZEnvironment) -> None:
    from josh.mock import MockConfig

    mock = MockServer(toolwoz_env, MockConfig(hang_rate=1.0, hang_s=30.0)).start()
    sock = _held_post(mock.port)
    try:
        time.sleep(0.2)
        started = time.monotonic()
        mock.stop()
        assert time.monotonic() - started < 2.0
        assert sock.recv(100) == b""  # the connection is closed, unanswered
    finally:
        sock.close()
