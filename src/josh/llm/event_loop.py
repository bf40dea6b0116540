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
import gc
import os
from collections.abc import Callable, Coroutine
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
    thresholds = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(max(thresholds[0], YOUNG_THRESHOLD), *thresholds[1:])
    try:
        with asyncio.Runner(loop_factory=loop_factory()) as runner:
            return runner.run(main)
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()
