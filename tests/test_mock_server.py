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
from hypothesis import given
from hypothesis import strategies as st

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


@pytest.mark.parametrize("way", ["async", "sync"])
def test_the_answer_comes_latency_after_the_request_its_making_included(
    toolwoz_env: ToolWOZEnvironment, monkeypatch: pytest.MonkeyPatch, way: str
) -> None:
    """`--mock-latency` is the mock's response time, as a server's includes its work: an answer that takes
    0.2 s to make still comes 0.4 s after the request, not 0.6 s; one slower than the latency comes when made."""
    import asyncio

    from josh.mock import MockConfig
    from josh.mock.policies import ScriptedToolWOZ

    policy = ScriptedToolWOZ(toolwoz_env, MockConfig(latency_s=0.4))
    making = [0.2]

    def answer(*args: object) -> dict[str, str]:
        time.sleep(making[0])
        return {"answer": "made"}

    monkeypatch.setattr(policy, "answer", answer)
    body = {"messages": [{"role": "user", "content": "hi"}]}

    def timed() -> float:
        started = time.monotonic()
        if way == "async":
            assert asyncio.run(policy.complete_async(body, {})) == {"answer": "made"}
        else:
            assert policy.complete(body, {}) == {"answer": "made"}
        return time.monotonic() - started

    assert 0.39 <= timed() < 0.55
    making[0] = 0.6
    assert 0.59 <= timed() < 0.75


def test_over_http_the_latency_counts_from_the_request_s_arrival(toolwoz_env: ToolWOZEnvironment) -> None:
    """The server's own reading of a request is inside `--mock-latency`, as in a server's response time: a
    body that comes 0.3 s after its head (latency 0.5 s) is answered ~0.2 s after the body, not 0.5 s."""
    from josh.mock import MockConfig

    body = b'{"messages": [{"role": "user", "content": "Hi!"}], "tools": [{"type": "function"}]}'
    with MockServer(toolwoz_env, MockConfig(latency_s=0.5)) as mock:
        sock = socket.create_connection(("127.0.0.1", mock.port), timeout=10)
        try:
            sock.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nX-Josh-Task-Id: MUL0001\r\n"
                b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
            )
            time.sleep(0.3)
            sock.sendall(body)
            sent = time.monotonic()
            assert sock.recv(12) == b"HTTP/1.1 200"
            assert 0.1 <= time.monotonic() - sent < 0.4
        finally:
            sock.close()


@given(
    st.lists(
        st.dictionaries(
            st.sampled_from(["role", "content", "name", "tool_calls"]),
            st.one_of(st.text(max_size=20), st.none(), st.lists(st.integers(), max_size=2)),
            min_size=1,
        ),
        min_size=1,
        max_size=5,
    )
)
def test_the_prompt_digest_is_the_sha256_of_the_sorted_json(messages: list[dict[str, object]]) -> None:
    """The oracle's samples depend on this digest: hashing it in pieces (the system prompt's remembered) must
    give what hashing the whole text gives, whatever the messages hold."""
    import hashlib
    import json

    from josh.mock.policies import _digest

    whole = hashlib.sha256(json.dumps(messages, sort_keys=True, default=str).encode()).hexdigest()[:16]
    assert _digest(messages) == _digest(messages) == whole


def _read_responses(sock: socket.socket, count: int) -> list[tuple[int, bytes]]:
    """`count` whole responses (status, body) read off `sock`, then b"" if the server closed it."""
    data, responses = b"", []
    while len(responses) < count:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return responses
            data += chunk
        head, data = data.split(b"\r\n\r\n", 1)
        length = int(next(line.split(b":")[1] for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")))
        while len(data) < length:
            data += sock.recv(65536)
        responses.append((int(head.split()[1]), data[:length]))
        data = data[length:]
    return responses


def test_the_server_speaks_http_1_as_clients_send_it(toolwoz_env: ToolWOZEnvironment) -> None:
    """Keep-alive requests one after another, two requests in one packet (answered in order), a request sent
    a byte at a time, HTTP/1.0 (closed after its answer), and the routes and methods it does not serve."""
    health = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
    with MockServer(toolwoz_env) as mock:
        with socket.create_connection(("127.0.0.1", mock.port), timeout=10) as sock:
            sock.sendall(health)
            assert _read_responses(sock, 1)[0][0] == 200
            sock.sendall(b"\r\n" + health + b"GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n")  # pipelined
            (first, _), (second, models) = _read_responses(sock, 2)
            assert (first, second) == (200, 200) and b"josh-mock-agent" in models
            for byte in b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n":
                sock.sendall(bytes([byte]))
            assert _read_responses(sock, 1)[0][0] == 404
            sock.sendall(b"DELETE /v1/models HTTP/1.1\r\nHost: x\r\n\r\n")
            assert _read_responses(sock, 1)[0][0] == 501
        with socket.create_connection(("127.0.0.1", mock.port), timeout=10) as sock:
            sock.sendall(b"GET /health HTTP/1.0\r\n\r\n")
            assert _read_responses(sock, 2) == [(200, b'{"status": "ok", "scripted": true}')]  # then closed


@pytest.mark.parametrize(
    ("request_bytes", "says"),
    [
        (b"NONSENSE\r\n\r\n", b"bad request line"),
        (b"GET /health HTTP/1.1\r\nno colon here\r\n\r\n", b"bad header line"),
        (b"GET /health HTTP/1.1\r\nX-Long: " + b"a" * 70_000, b"request headers too long"),
        (b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 5\r\n\r\nnot j", b"request body is not JSON"),
    ],
)
def test_a_request_it_cannot_read_gets_a_400(
    toolwoz_env: ToolWOZEnvironment, request_bytes: bytes, says: bytes
) -> None:
    with MockServer(toolwoz_env) as mock, socket.create_connection(("127.0.0.1", mock.port), timeout=10) as sock:
        sock.sendall(request_bytes)
        [(status, body)] = _read_responses(sock, 1)
        assert status == 400 and says in body


def test_requests_that_come_together_arrive_together(
    toolwoz_env: ToolWOZEnvironment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two requests that reach the server while it is busy are both read (their arrival noted) before either
    is answered: making one answer (0.15 s here) does not make the other arrive later, so both come their
    latency after they came, together. (Read one after the other, the second was answered 0.15 s later.)"""
    from josh.mock import MockConfig

    with MockServer(toolwoz_env, MockConfig(latency_s=0.6)) as mock:
        real = mock.policy.answer

        def slow(*args: object, **kwargs: object) -> dict[str, object]:
            time.sleep(0.15)  # the server's own work, holding its loop
            return real(*args, **kwargs)  # type: ignore[arg-type]

        monkeypatch.setattr(mock.policy, "answer", slow)
        first = _held_post(mock.port)  # holds the loop 0.15 s from now
        time.sleep(0.05)
        both = [_held_post(mock.port), _held_post(mock.port)]  # come while it is busy
        try:
            done = []
            for sock in both:
                assert sock.recv(12) == b"HTTP/1.1 200"
                done.append(time.monotonic())
        finally:
            for sock in [first, *both]:
                sock.close()
    assert done[1] - done[0] < 0.08
