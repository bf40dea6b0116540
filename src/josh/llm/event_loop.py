"""`run`: josh's `asyncio.run`, with the garbage collector tuned for a run's many short-lived objects.

While a run goes, the objects made before it (imported modules, the benchmark's data: ~100,000 of them) are
kept out of the collector's sight (`gc.freeze`): they outlive the run, and a full collection walked them all,
pausing every conversation in flight for 50-130 ms (`bench/josh_orchestration.py`'s harvest, 1.1 s long, met
one or two). And the youngest generation is collected every 20,000 allocations rather than 700: a model call
allocates thousands of short-lived objects, nearly all freed at once by their counts, and the collections of
the default threshold cost ~4% of a harvest's CPU. Both are undone when the last run going ends.

(uvloop's event loop was measured too, on the same harvest alternating with asyncio's 6 times: 5% less CPU a
call over HTTP, 10% fewer calls a second in-process; not worth a dependency.)
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import threading
from collections.abc import Coroutine, Iterator
from typing import Any, TypeVar

T = TypeVar("T")
YOUNG_THRESHOLD = 20_000  # allocations between collections of the youngest generation, while a run goes


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run `main` to its end on a new event loop, as `asyncio.run` does (Ctrl-C cancels it, and the loop is
    closed after), with the collector tuned meanwhile."""
    with _collector_tuned(), asyncio.Runner() as runner:
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
