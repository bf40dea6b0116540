"""`ends_within`: a test step that must end in time fails, rather than hanging the suite, when it does not."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


@contextmanager
def ends_within(seconds: float) -> Iterator[None]:
    """Raise AssertionError in the block if it runs longer than `seconds` (main thread, Unix: SIGALRM)."""

    def too_long(signum: int, frame: FrameType | None) -> None:
        raise AssertionError(f"did not end within {seconds} s")

    previous = signal.signal(signal.SIGALRM, too_long)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
