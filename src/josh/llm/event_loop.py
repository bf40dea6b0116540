"""`run`: josh's `asyncio.run`, on uvloop's event loop where it is installed.

Why: a harvest is one event loop driving hundreds of HTTP requests at once, and asyncio's own loop (in
Python) costs about a quarter of josh's CPU per model call; uvloop's (libuv, in C) does the same work for
less (`bench/josh_orchestration.py` measures both). It is a dependency everywhere but Windows, where
asyncio's loop is used. `JOSH_EVENT_LOOP=asyncio` picks asyncio's loop anyway (to rule the loop out when
something behaves oddly).

While the loop runs, the objects made before it (imported modules, the benchmark's data: ~100,000 of them)
are kept out of the garbage collector's sight (`gc.freeze`): they outlive the run, and a full collection
walked them all, pausing every conversation in flight for 50-130 ms. And the youngest generation is collected
every 20,000 allocations rather than 700: a model call allocates thousands of short-lived objects, nearly all
freed at once by their counts, and the collections of the default threshold cost ~4% of a harvest's CPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import threading
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

T = TypeVar("T")
ENV_VAR = "JOSH_EVENT_LOOP"
YOUNG_THRESHOLD = 20_000  # allocations between collections of the youngest generation, while a run goes


def loop_factory() -> Callable[[], asyncio.AbstractEventLoop] | None:
    """uvloop's `new_event_loop` when it is installed and `JOSH_EVENT_LOOP` does not say "asyncio"; None
    (asyncio's default loop) otherwise."""
    if os.environ.get(ENV_VAR, "").strip().lower() == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def loop_name() -> str:
    """"uvloop" or "asyncio": the loop `run` would use now."""
    return "asyncio" if loop_factory() is None else "uvloop"


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run `main` to its end on a new event loop (see `loop_factory`), as `asyncio.run` does: Ctrl-C cancels
    it, and the loop is closed after. What existed before is frozen out of garbage collection meanwhile."""
    with _collector_tuned(), asyncio.Runner(loop_factory=loop_factory()) as runner:
        return runner.run(main)


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
