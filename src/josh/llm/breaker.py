"""A circuit breaker shared by the models that talk to one endpoint.

Without it, an endpoint that dies mid-run turns every remaining conversation into an error record within
seconds (each request spends its retries and gives up). With it, consecutive "unavailability" failures
(connection errors, timeouts, HTTP 5xx) across all requests open the breaker: requests stop being sent and
wait, one probe loop asks the endpoint with backoff whether it is back, and either the breaker closes and
everyone goes on, or the outage outlasts `max_outage_s` and every waiter (and every later request) raises
`EndpointDownError`. A rate limit or any other 4xx is an answer, not an outage: it never counts.

All requests of one breaker must run on one event loop (the runner's).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Literal

from josh.llm.base import EndpointDownError

log = logging.getLogger(__name__)

Probe = Callable[[], Awaitable[str | None]]
"""Sends one tiny request: None when the endpoint answered with anything but an unavailability failure,
else that failure in one line."""

BreakerState = Literal["closed", "open", "down"]

__all__ = ["BreakerState", "EndpointBreaker", "EndpointDownError", "Probe"]


class EndpointBreaker:
    """Pause every request to an endpoint during an outage; give up on it after `max_outage_s`.

    Args:
        threshold: consecutive unavailability failures (across all requests) that open the breaker.
        max_outage_s: seconds from opening after which the endpoint is declared down.
        probe_base_delay: seconds before the first probe; each further probe waits twice as long...
        probe_max_delay: ...up to this cap (the last probe is sent exactly at the bound).
        clock: monotonic seconds; injectable for tests.
        sleep: the probe loop's sleep; injectable for tests.

    `probes` counts the probe requests sent, `outages` the times the breaker opened.
    """

    def __init__(
        self,
        threshold: int = 5,
        max_outage_s: float = 300.0,
        probe_base_delay: float = 1.0,
        probe_max_delay: float = 30.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    ) -> None:
        if threshold < 1:
            raise ValueError(f"threshold must be at least 1, got {threshold}")
        if max_outage_s < 0 or probe_base_delay < 0 or probe_max_delay < 0:
            raise ValueError("breaker delays must not be negative")
        self.threshold = threshold
        self.max_outage_s = max_outage_s
        self.probe_base_delay = probe_base_delay
        self.probe_max_delay = probe_max_delay
        self._clock = clock
        self._sleep = sleep
        self.state: BreakerState = "closed"
        self.failures = 0  # consecutive unavailability failures while closed
        self.probes = 0
        self.outages = 0
        self.endpoint = "the endpoint"
        self._last_error = ""
        self._opened_at = 0.0
        self._changed: asyncio.Event | None = None  # set when an outage ends, either way
        self._probe_task: asyncio.Task[None] | None = None
        self._down_message = ""

    def __repr__(self) -> str:
        return f"EndpointBreaker(state={self.state!r}, failures={self.failures}, probes={self.probes})"

    @property
    def down_message(self) -> str:
        """Why the endpoint was declared down ("" while it is not)."""
        return self._down_message

    @property
    def is_open(self) -> bool:
        """True while requests wait and the endpoint is being probed."""
        return self.state == "open"

    async def wait_ready(self) -> None:
        """Return at once while closed; while open, wait for the verdict. Raises `EndpointDownError` once the
        endpoint is declared down (now or while waiting)."""
        while True:
            if self.state == "down":
                raise EndpointDownError(self._down_message)
            if self.state == "closed" or self._changed is None:
                return
            await self._changed.wait()

    def record_success(self) -> None:
        """A request got an answer: the consecutive count starts over, and an open breaker closes (the
        endpoint evidently answers)."""
        if self.state == "closed":
            self.failures = 0
        elif self.state == "open":
            self._close()

    def record_failure(self, probe: Probe, *, endpoint: str, error: str) -> None:
        """A request failed because the endpoint was unavailable (connection error, timeout, HTTP 5xx).

        At `threshold` consecutive failures the breaker opens and starts probing with `probe` (the model
        that saw the failure supplies its own tiny request). While open or down, only the last error is kept.
        """
        if self.state == "down":
            return
        self._last_error = error
        if self.state == "open":
            return
        self.failures += 1
        self.endpoint = endpoint or self.endpoint
        if self.failures >= self.threshold:
            self._open(probe)

    # ------------------------------------------------------------------------------------------ internals

    def _open(self, probe: Probe) -> None:
        self.state = "open"
        self.outages += 1
        self._opened_at = self._clock()
        self._changed = asyncio.Event()
        log.warning(
            "%s is unavailable (%s in a row; last: %s); pausing all requests and probing it for up to %.0f s",
            self.endpoint,
            f"{self.failures} failure" + ("s" if self.failures != 1 else ""),
            self._last_error,
            self.max_outage_s,
        )
        self._probe_task = asyncio.get_running_loop().create_task(self._probe_loop(probe))

    def _close(self) -> None:
        elapsed = self._clock() - self._opened_at
        self.state = "closed"
        self.failures = 0
        log.warning("%s is back after %.0f s", self.endpoint, elapsed)
        if self._changed is not None:
            self._changed.set()

    def _go_down(self, why: str) -> None:
        elapsed = self._clock() - self._opened_at
        self.state = "down"
        self._down_message = (
            f"{self.endpoint} has been unavailable for {elapsed:.0f} s ({why}; "
            f"last error: {self._last_error})"
        )
        if self._changed is not None:
            self._changed.set()

    async def _probe_loop(self, probe: Probe) -> None:
        delay = self.probe_base_delay
        try:
            while self.state == "open":
                remaining = self._opened_at + self.max_outage_s - self._clock()
                await self._sleep(max(0.0, min(delay, remaining)))
                if self.state != "open":
                    return
                self.probes += 1
                try:
                    failure = await probe()
                except Exception as exc:  # a probe must never kill the loop and strand the waiters
                    failure = f"the probe failed: {type(exc).__name__}: {exc}"
                if self.state != "open":
                    return
                if failure is None:
                    self._close()
                    return
                self._last_error = failure
                if self._clock() - self._opened_at >= self.max_outage_s:
                    self._go_down(f"the limit is {self.max_outage_s:.0f} s")
                    return
                delay = min(delay * 2, self.probe_max_delay) if delay > 0 else self.probe_max_delay
        finally:
            if self.state == "open":  # cancelled mid-outage: release the waiters rather than hang them
                self._go_down("probing was stopped")
