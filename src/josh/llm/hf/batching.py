"""Batching across concurrent calls: one worker thread serves a local model's `chat()` calls (many conversations
at once, the `n` choices of sibling leaves) in batches.

Each time it is free, the worker takes everything queued (up to `max_batch_size` rows) with the same
temperature and hands it to the model as one batch. Batches form by themselves, without a fixed wait: the first
call runs alone, and the calls that arrive while it runs go together next. Each caller gets its own rows (a
`Job`'s future, settled on the caller's event loop); an error in a batch goes to every caller in it. A greedy
call with `n` choices costs one row (its choices are identical); a sampled one costs `n`.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from josh.llm.base import FatalLLMError
from josh.types import AssistantMessage


@dataclass(eq=False)
class Job:
    """One `chat()` call waiting for (or in) a batch."""

    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] | None
    n: int
    temperature: float
    max_tokens: int
    seed: int | None
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[list[AssistantMessage]]
    started: float = field(default_factory=time.perf_counter)
    prompt: list[int] = field(default_factory=list)
    limit: int = 0  # new tokens this job may have, after the context cap

    @property
    def rows(self) -> int:
        return self.n if self.temperature > 0 else 1  # greedy choices are identical: one row serves them all

    @property
    def key(self) -> float:
        return self.temperature


@dataclass
class BatchStats:
    """What the worker did: batches generated (`generate` calls, or runs of the CPU loop), rows and requests
    served, and the prompt tokens the CPU loop did not read again because a batch's rows shared them."""

    generate_calls: int = 0
    rows: int = 0
    requests: int = 0
    shared_tokens: int = 0

    @property
    def mean_rows(self) -> float:
        return self.rows / self.generate_calls if self.generate_calls else 0.0


def settle(job: Job, outcome: list[AssistantMessage] | BaseException) -> None:
    """Hand `outcome` to the job's caller on its event loop (nothing when the caller or its loop is gone)."""

    def deliver() -> None:
        if job.future.done():
            return
        if isinstance(outcome, BaseException):
            job.future.set_exception(outcome)
        else:
            job.future.set_result(outcome)

    with contextlib.suppress(RuntimeError):  # the loop was closed
        job.loop.call_soon_threadsafe(deliver)


def batch_seed(seeds: list[int | None]) -> int:
    """One seed for a batch from its requests' seeds, in order (None counts as 0)."""
    value = 0
    for seed in seeds:
        value = (value * 1_000_003 + (seed or 0)) % (2**63)
    return value


class BatchWorker:
    """The thread that serves a model's queued jobs in batches (see the module docstring): `serve(batch)`
    generates a batch and settles each of its jobs. Started by the first `submit`, stopped by `close` after
    its current batch (the jobs still queued fail); a later `submit` starts it again."""

    def __init__(self, name: str, max_batch_size: int, serve: Callable[[list[Job]], None]) -> None:
        self.name = name
        self.max_batch_size = max_batch_size
        self._serve = serve
        self._queue: deque[Job] = deque()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None
        self._stopping = False

    def submit(self, job: Job) -> None:
        """Queue `job` for the next batch, starting the thread if it is not running."""
        with self._wake:
            if self._thread is None or not self._thread.is_alive():
                self._stopping = False
                self._thread = threading.Thread(
                    target=self._serve_forever, name="josh-hf-batcher", daemon=True
                )
                self._thread.start()
            self._queue.append(job)
            self._wake.notify()

    async def close(self) -> None:
        """Stop the thread after its current batch."""
        with self._wake:
            thread, self._stopping = self._thread, True
            self._wake.notify()
        if thread is not None:
            await asyncio.to_thread(thread.join)

    def _serve_forever(self) -> None:
        while True:
            with self._wake:
                while not self._queue and not self._stopping:
                    self._wake.wait()
                if self._stopping:
                    left, self._queue = list(self._queue), deque()
                    self._thread = None
                    break
                batch = self._take()
            if batch:
                self._serve(batch)
        for job in left:
            settle(job, FatalLLMError(f"{self.name} was closed before this request ran"))

    def _take(self) -> list[Job]:
        """The queued jobs of the first live job's temperature, in order, up to `max_batch_size` rows (a job
        wider than that goes alone). Called with the lock held."""
        batch: list[Job] = []
        rows = 0
        kept: deque[Job] = deque()
        for job in self._queue:
            if job.future.done():  # its caller was cancelled
                continue
            fits = not batch or (job.key == batch[0].key and rows + job.rows <= self.max_batch_size)
            if fits:
                batch.append(job)
                rows += job.rows
            else:
                kept.append(job)
        self._queue = kept
        return batch
