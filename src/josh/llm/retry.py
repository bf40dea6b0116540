"""Backoff for model calls: every retry constant lives here.

Exponential backoff with full jitter (a uniform draw between 0 and the exponential cap, so that many
rollouts hit by the same rate limit do not retry in lockstep), a capped number of attempts, and a
server's `Retry-After` honoured up to a maximum.
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a retryable model error is retried.

    `max_attempts` counts every request, the first included: 6 means one try and up to five retries.
    """

    max_attempts: int = 6
    base_delay: float = 1.0  # seconds; the cap of the first wait
    factor: float = 2.0
    max_delay: float = 30.0  # cap of any computed wait
    max_retry_after: float = 60.0  # cap of a server's Retry-After

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {self.max_attempts}")
        if self.base_delay < 0 or self.max_delay < 0 or self.max_retry_after < 0:
            raise ValueError("retry delays must not be negative")
        if self.factor < 1:
            raise ValueError(f"factor must be at least 1, got {self.factor}")

    def delay(
        self, attempt: int, retry_after: float | None = None, rng: random.Random | None = None
    ) -> float:
        """Seconds to wait after the `attempt`-th failed request (1 after the first failure).

        A server's `retry_after` (seconds) wins over the computed backoff, capped at `max_retry_after`.
        Otherwise the wait is drawn uniformly from [0, min(max_delay, base_delay * factor**(attempt - 1))].
        """
        if retry_after is not None and math.isfinite(retry_after) and retry_after >= 0:
            return min(retry_after, self.max_retry_after)
        exponent = max(attempt - 1, 0)
        # min() before the power would overflow for absurd attempt counts; cap the exponent instead.
        cap = min(self.max_delay, self.base_delay * self.factor ** min(exponent, 64))
        return (rng or random).uniform(0.0, cap)


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """The wait a server asked for in `retry-after-ms` or `retry-after` (seconds or an HTTP date), if any.

    `headers` should match case-insensitively (as `httpx.Headers` does); plain dicts need lower-case names.
    """
    if not headers:
        return None
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) / divisor
        except ValueError:
            continue
        return seconds if math.isfinite(seconds) else None
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        parsed = email.utils.parsedate_tz(value)
        if parsed is None:
            return None
        return max(float(email.utils.mktime_tz(parsed)) - time.time(), 0.0)
    except (TypeError, ValueError, OverflowError):
        return None
