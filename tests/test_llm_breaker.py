"""The endpoint circuit breaker: outages pause requests, then either recover or stop with EndpointDownError.

Time in the probe loop is a fake clock (its sleep advances the clock), so probe counts and delays are exact;
retry backoff stays real but tiny. Outcomes are asserted, never durations.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from josh.llm import (
    EndpointBreaker,
    EndpointDownError,
    EndpointError,
    FatalLLMError,
    OpenAIChatModel,
    RetryPolicy,
)
from josh.types import AssistantMessage, UserMessage
from tests.test_llm_openai import SECRET, TIMEOUT, FakeOpenAI, Reply, closed_port, status, text

RETRY = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.02)  # max_attempts >= threshold below


class FakeTime:
    """A clock the probe loop's sleep advances; `hook` runs after each sleep (to bring an endpoint back)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self.hook: Callable[[], None] | None = None

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        if self.hook is not None:
            self.hook()
        await asyncio.sleep(0)


def make_breaker(fake_time: FakeTime, threshold: int = 3) -> EndpointBreaker:
    return EndpointBreaker(
        threshold=threshold,
        max_outage_s=100.0,
        probe_base_delay=1.0,
        probe_max_delay=30.0,
        clock=fake_time.clock,
        sleep=fake_time.sleep,
    )


def make_model(base_url: str, breaker: EndpointBreaker, retry: RetryPolicy = RETRY) -> OpenAIChatModel:
    return OpenAIChatModel(
        "gpt-4o-mini", base_url=base_url, api_key=SECRET, timeout=TIMEOUT, retry=retry, breaker=breaker
    )


def spy_sends(model: OpenAIChatModel, breaker: EndpointBreaker) -> list[str]:
    """The breaker's state at every chat request the model sends (probes go around it)."""
    states: list[str] = []
    original = model._request_once

    async def counted(params: dict[str, Any], headers: dict[str, str]) -> list[AssistantMessage]:
        states.append(breaker.state)
        return await original(params, headers)

    model._request_once = counted  # type: ignore[method-assign]
    return states


def is_probe(body: dict[str, Any]) -> bool:
    return body.get("max_tokens") == 1 and body["messages"] == [{"role": "user", "content": "Reply with OK."}]


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI()
    yield server
    server.close()


def breaker_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "josh.llm.breaker" and r.levelno >= logging.WARNING
    ]


# ---------------------------------------------------------------------------------------------- the state machine


async def never(*_: Any) -> str | None:
    return "still down"


def test_probes_back_off_up_to_the_bound_then_the_endpoint_is_down() -> None:
    fake_time = FakeTime()
    breaker = make_breaker(fake_time, threshold=2)

    async def run() -> None:
        breaker.record_failure(never, endpoint="the endpoint http://x/v1", error="HTTP 503")
        assert breaker.state == "closed"
        breaker.record_failure(never, endpoint="the endpoint http://x/v1", error="HTTP 503")
        assert breaker.state == "open"
        with pytest.raises(EndpointDownError) as info:
            await breaker.wait_ready()
        message = str(info.value)
        assert "the endpoint http://x/v1" in message and "unavailable for 100 s" in message
        assert "last error: still down" in message  # the probes' own failure
        with pytest.raises(EndpointDownError):  # and every later request, at once
            await breaker.wait_ready()

    asyncio.run(run())
    # 1, 2, 4, 8, 16, then the 30 s cap; the last wait ends exactly at the 100 s bound (91 + 9).
    assert fake_time.sleeps == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0, 9.0]
    assert breaker.probes == 8 and breaker.state == "down"


def test_a_probe_answer_closes_the_breaker(caplog: pytest.LogCaptureFixture) -> None:
    fake_time = FakeTime()
    breaker = make_breaker(fake_time, threshold=1)
    answers = iter(["HTTP 503", "HTTP 503", None])

    async def probe() -> str | None:
        return next(answers)

    async def run() -> None:
        breaker.record_failure(probe, endpoint="the endpoint http://x/v1", error="connection refused")
        await breaker.wait_ready()

    with caplog.at_level(logging.WARNING):
        asyncio.run(run())
    assert breaker.state == "closed" and breaker.failures == 0 and breaker.probes == 3
    assert fake_time.sleeps == [1.0, 2.0, 4.0]
    lines = breaker_lines(caplog)
    assert len(lines) == 2
    assert (
        "the endpoint http://x/v1" in lines[0] and "(1 failure in a row" in lines[0] and "100 s" in lines[0]
    )
    assert lines[1] == "the endpoint http://x/v1 is back after 7 s"


def test_a_success_resets_the_count() -> None:
    breaker = EndpointBreaker(threshold=3)

    async def run() -> None:
        for _ in range(2):
            breaker.record_failure(never, endpoint="e", error="x")
        breaker.record_success()
        for _ in range(2):
            breaker.record_failure(never, endpoint="e", error="x")

    asyncio.run(run())
    assert breaker.state == "closed" and breaker.failures == 2 and breaker.outages == 0


# ---------------------------------------------------------------------------------------------- with a server


def contents(results: list[Any]) -> list[str]:
    """The text of each chat's one reply, or the repr of what it raised."""
    return [r[0].content if isinstance(r, list) else repr(r) for r in results]


def chat_all(model: OpenAIChatModel, count: int) -> list[Any]:
    async def run() -> list[Any]:
        async with model:
            calls = [model.chat([UserMessage(content=f"question {i}")]) for i in range(count)]
            return await asyncio.gather(*calls, return_exceptions=True)

    return asyncio.run(run())


def test_a_503_outage_pauses_concurrent_requests_until_the_endpoint_is_back(
    fake: FakeOpenAI, caplog: pytest.LogCaptureFixture
) -> None:
    fake_time = FakeTime()
    breaker = make_breaker(fake_time)
    down = {"now": True}
    fake.rule = lambda body: status(503) if down["now"] else None

    def back_after_two_probes() -> None:
        if breaker.probes >= 2:
            down["now"] = False

    fake_time.hook = back_after_two_probes
    model = make_model(fake.base_url, breaker)
    states = spy_sends(model, breaker)
    with caplog.at_level(logging.WARNING):
        results = chat_all(model, 6)
    assert contents(results) == ["hello"] * 6
    assert states and set(states) == {"closed"}  # nothing but probes went out while open
    assert breaker.outages == 1 and breaker.probes == 3
    probes = [seen for seen in fake.requests if is_probe(seen.body)]
    assert len(probes) == 3
    lines = breaker_lines(caplog)
    assert len(lines) == 2 and "is unavailable" in lines[0] and lines[1].endswith("is back after 7 s")


def test_retries_running_out_during_an_outage_wait_for_the_verdict(fake: FakeOpenAI) -> None:
    fake_time = FakeTime()
    breaker = make_breaker(fake_time, threshold=1)
    down = {"now": True}
    fake.rule = lambda body: status(503) if down["now"] else None

    def back() -> None:
        if breaker.probes >= 1:
            down["now"] = False

    fake_time.hook = back
    model = make_model(fake.base_url, breaker, retry=RetryPolicy(max_attempts=1))  # no retries of their own
    results = chat_all(model, 4)
    assert contents(results) == ["hello"] * 4
    assert breaker.state == "closed" and breaker.outages == 1


def test_connection_refused_mid_run_then_back_on_the_same_port(fake: FakeOpenAI) -> None:
    fake_time = FakeTime()
    breaker = make_breaker(fake_time)
    port = fake.server.server_port
    restarted: list[FakeOpenAI] = []

    def restart_after_one_probe() -> None:
        if breaker.probes >= 1 and not restarted:
            restarted.append(FakeOpenAI(port))

    fake_time.hook = restart_after_one_probe
    model = make_model(fake.base_url, breaker)
    states = spy_sends(model, breaker)

    async def run() -> list[Any]:
        async with model:
            before = await model.chat([UserMessage(content="before")])
            fake.close()  # the server dies: connections are refused
            calls = [model.chat([UserMessage(content=f"during {i}")]) for i in range(5)]
            return [before, *await asyncio.gather(*calls, return_exceptions=True)]

    try:
        results = asyncio.run(run())
    finally:
        for server in restarted:
            server.close()
    assert contents(results) == ["hello"] * 6
    assert set(states) == {"closed"}
    assert breaker.outages == 1 and breaker.probes == 2  # the first probe found nothing, the second an answer
    [revived] = restarted
    answered = [seen.body["messages"][0]["content"] for seen in revived.requests if not is_probe(seen.body)]
    assert sorted(answered) == [f"during {i}" for i in range(5)]


def test_an_endpoint_that_never_comes_back_stops_every_request(caplog: pytest.LogCaptureFixture) -> None:
    base_url = f"http://127.0.0.1:{closed_port()}/v1"
    fake_time = FakeTime()
    breaker = make_breaker(fake_time)
    model = make_model(base_url, breaker)
    states = spy_sends(model, breaker)

    async def run() -> tuple[list[Any], BaseException | None, int]:
        async with model:
            calls = [model.chat([UserMessage(content=f"q{i}")]) for i in range(6)]
            results = await asyncio.gather(*calls, return_exceptions=True)
            sent_before = len(states)
            try:
                await model.chat([UserMessage(content="later")])
            except EndpointDownError as exc:
                return results, exc, sent_before
            return results, None, sent_before

    with caplog.at_level(logging.WARNING):
        results, later, sent_before = asyncio.run(run())
    assert all(isinstance(r, EndpointDownError) for r in results), results
    assert isinstance(later, EndpointDownError) and len(states) == sent_before  # refused without a request
    message = str(results[0])
    assert base_url in message and "unavailable for 100 s" in message and "connection refused" in message
    assert SECRET not in message
    assert set(states) == {"closed"} and len(states) <= 6 * RETRY.max_attempts
    assert breaker.probes == 8 and breaker.state == "down"
    assert isinstance(results[0], EndpointError) and isinstance(results[0], FatalLLMError)
    assert len([line for line in breaker_lines(caplog) if "is unavailable" in line]) == 1


def test_rate_limits_and_other_answers_do_not_count(fake: FakeOpenAI) -> None:
    breaker = EndpointBreaker(threshold=1)  # any counted failure would open it
    fake.queue(
        status(429, headers={"Retry-After": "0"}),
        Reply("invalid_json"),
        text("ok"),
        status(400, body={"error": {"message": "bad request"}}),
    )
    model = make_model(fake.base_url, breaker)

    async def run() -> None:
        async with model:
            [reply] = await model.chat([UserMessage(content="a")])
            assert reply.content == "ok"
            with pytest.raises(FatalLLMError):
                await model.chat([UserMessage(content="b")])

    asyncio.run(run())
    assert breaker.state == "closed" and breaker.outages == 0 and breaker.probes == 0


def test_no_breaker_keeps_giving_up_per_request(fake: FakeOpenAI) -> None:
    fake.default = status(503)
    model = OpenAIChatModel(
        "gpt-4o-mini", base_url=fake.base_url, api_key=SECRET, timeout=TIMEOUT, retry=RETRY
    )
    results = chat_all(model, 2)
    assert all("gave up after 3 attempts" in str(r) for r in results)
    assert len(fake.requests) == 6
