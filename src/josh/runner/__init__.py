"""Many tasks at once: concurrency limit, append-only resumable run files, error isolation, metrics."""

from josh.runner.lock import RunLock, RunLockedError, run_lock
from josh.runner.pool import run_pool
from josh.runner.runfile import RunContents, RunWriter, UnstartedRunError, open_run, read_run
from josh.runner.summary import summarize

__all__ = [
    "RunContents",
    "RunLock",
    "RunLockedError",
    "RunWriter",
    "UnstartedRunError",
    "open_run",
    "read_run",
    "run_lock",
    "run_pool",
    "summarize",
]
