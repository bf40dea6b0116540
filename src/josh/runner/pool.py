"""Run many jobs concurrently under one limit; a job's failure becomes its own error record."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

J = TypeVar("J")
R = TypeVar("R")


async def run_pool(
    jobs: Sequence[J],
    worker: Callable[[J], Awaitable[R]],
    *,
    concurrency: int,
    on_result: Callable[[J, R], None],
    on_error: Callable[[J, BaseException], R],
    stop_on: tuple[type[BaseException], ...] = (),
) -> None:
    """Run `worker` on every job, at most `concurrency` at once, calling `on_result` as each one finishes.

    An exception in one job is turned into a result by `on_error` and reported like any other; it never
    stops the others. Cancellation (Ctrl-C) cancels the jobs still running; finished results are kept.
    An exception of a `stop_on` type (an endpoint that went down) is nobody's result: the jobs still running
    are cancelled, the jobs not started are left, and it is raised, so nothing unfinished is recorded.
    """
    if concurrency < 1:
        raise ValueError("concurrency must be >= 1")
    queue: asyncio.Queue[J] = asyncio.Queue()
    for job in jobs:
        queue.put_nowait(job)

    async def drain() -> None:
        while True:
            try:
                job = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            try:
                result = await worker(job)
            except asyncio.CancelledError:
                raise
            except stop_on:
                raise
            except Exception as exc:
                result = on_error(job, exc)
            on_result(job, result)

    workers = [asyncio.create_task(drain()) for _ in range(min(concurrency, len(jobs)))]
    try:
        await asyncio.gather(*workers)  # the first stop_on exception propagates; finally cancels the rest
    finally:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
