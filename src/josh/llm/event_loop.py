"""`run`: josh's `asyncio.run`, with the garbage collector tuned for a run's many short-lived objects.

While a run goes, the objects made before it (imported modules, the benchmark's data: ~100,000 of them) are
kept out of the collector's sight (`gc.freeze`): they outlive the run, and a full collection walked them all,
pausing every conversation in flight for 50-130 ms (`bench/josh_orchestration.py`'s harvest, 1.1 s long, met
one or two). And the youngest generation is collected every 20,000 allocations rather than 700: a model call
allocates thousands of short-lived objects, nearly all freed at once by their counts, and the collections of
the default threshold cost ~4% of a harvest's CPU. Both are undone when the last run going ends.

(uvloop's event loop was measured too, on the same harvest alternating with asyncio's 6 times: 5% less CPU a
call over HTTP, 10% fewer calls a second in-process; not worth a dependency.)

`run(..., precise_timers=True)` is for loops whose timers are the point (the mock endpoint holding each call
its latency): on Linux asyncio waits with epoll, whose timeout is whole milliseconds rounded up, so a timer
fires ~0.8 ms late on average (measured here, 50 ms sleeps); that loop waits with `select()` on the epoll
descriptor first, to the microsecond (~0.3 ms late).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import select
import selectors
import threading
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

T = TypeVar("T")
YOUNG_THRESHOLD = 20_000  # allocations between collections of the youngest generation, while a run goes


def run(main: Coroutine[Any, Any, T], *, precise_timers: bool = False) -> T:
    """Run `main` to its end on a new event loop, as `asyncio.run` does (Ctrl-C cancels it, and the loop is
    closed after), with the collector tuned meanwhile; `precise_timers`: see the module's docstring."""
    factory = precise_loop if precise_timers else None
    with _collector_tuned(), asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


_FD_SETSIZE = 1024  # select() takes no descriptor above it


class _PreciseEpollSelector(selectors.EpollSelector):
    """An epoll selector whose waits end to the microsecond, not the millisecond (see the module)."""

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is not None and timeout > 0 and self.fileno() < _FD_SETSIZE:
            select.select([self.fileno()], [], [], timeout)  # readable as soon as any event is ready
            timeout = 0
        return super().select(timeout)


def precise_loop() -> asyncio.AbstractEventLoop:
    """A new event loop whose timers fire to the microsecond where asyncio's would not (Linux's epoll)."""
    if hasattr(selectors, "EpollSelector"):
        return asyncio.SelectorEventLoop(_PreciseEpollSelector())
    return asyncio.new_event_loop()  # kqueue (macOS, BSD) waits to the nanosecond already; Windows: as it is


_tuned_runs = 0  # runs going now, in any thread (a mock endpoint's loop beside a harvest's, in tests)
_saved_threshold: tuple[int, int, int] = (700, 10, 10)
_tuning = threading.Lock()


@contextlib.contextmanager
def _collector_tuned() -> Iterator[None]:
    """The collector tuned for a run (see the module's docstring) from the first run that starts to the last
    that ends, then as it was."""
    global _tuned_runs, _saved_threshold
    with _tuning:
        if _tuned_runs == 0:
            _saved_threshold = gc.get_threshold()
            gc.freeze()
            gc.set_threshold(max(_saved_threshold[0], YOUNG_THRESHOLD), *_saved_threshold[1:])
        _tuned_runs += 1
    try:
        yield
    finally:
        with _tuning:
            _tuned_runs -= 1
            if _tuned_runs == 0:
                gc.set_threshold(*_saved_threshold)
                gc.unfreeze()
