"""One writer at a time in the ToolWOZ cache: an exclusive `flock` held for a whole build or wheel copy.

Two `josh data fetch --force` (or two first runs) at once would otherwise each remove what they take for
a killed build's leftovers, including the other's half-written file. The lock is released by the kernel
when its holder exits, killed or not, so a stale lock file never blocks anyone.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from josh.envs.toolwoz import paths

try:
    import fcntl
except ImportError:  # Windows: no flock; concurrent builds there are not serialised
    fcntl = None  # type: ignore[assignment]

Report = Callable[[str], None]


@contextmanager
def exclusive(report: Report | None = None) -> Iterator[bool]:
    """Hold the cache's write lock for the `with` block, waiting (and saying so once) while another josh
    holds it. Yields True when it had to wait: the other writer may have done the work meanwhile."""
    lock_path = paths.lock_path()
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        waited = False
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                waited = True
                if report:
                    report(f"another josh is writing the ToolWOZ cache in {lock_path.parent}; waiting for it")
                fcntl.flock(fd, fcntl.LOCK_EX)
        yield waited
    finally:
        os.close(fd)  # releases the lock
