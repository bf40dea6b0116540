"""A run's jobs, whatever the benchmark: which (task, trial) pairs it runs, and running them many at once with
each record appended as it finishes (`josh eval`, `josh harvest`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol, runtime_checkable

from josh.errors import JoshError
from josh.llm.base import EndpointError
from josh.runner import RunWriter, run_pool


class TaskSource(Protocol):
    """What choosing a run's tasks needs of an environment (ToolWOZ's and tau2's are ones)."""

    def task_ids(self, split: str) -> list[str]: ...


@runtime_checkable
class JobOptions(Protocol):
    """The options that choose a run's (task, trial) jobs and run them, whatever the benchmark (every
    benchmark's run options have them: `josh.benchmarks.run_options.RunOptions`)."""

    @property
    def split(self) -> str: ...  # the environment's split the tasks come from
    @property
    def task(self) -> list[str] | None: ...  # only these tasks (None: the whole split)
    @property
    def limit(self) -> int | None: ...  # only the first N tasks
    @property
    def trials(self) -> int: ...  # (task, trial) jobs per task
    @property
    def seed(self) -> int: ...  # trial t's seed is seed + t
    @property
    def concurrency(self) -> int: ...  # jobs at once

    def skip_reason(self, env: Any, task_id: str) -> str | None:
        """Why the run cannot use a task (None: it can); such tasks are left out of the split."""
        ...


def select_tasks(env: TaskSource, config: JobOptions) -> list[str]:
    """The task ids of the run, in order: the split without the tasks the run cannot use
    (`config.skip_reason`), then `task`, then `limit`. Naming a task the run cannot use is an error."""
    ids = env.task_ids(config.split)
    if config.task:
        wanted = [t.removesuffix(".json") for t in config.task]
        in_split = set(ids)
        missing = [t for t in wanted if t not in in_split]
        if missing:
            raise JoshError(f"not in split {config.split!r}: {', '.join(missing[:10])}")
        for task_id in wanted:
            reason = config.skip_reason(env, task_id)
            if reason is not None:
                raise JoshError(f"task {task_id!r} {reason}: drop it from --task")
        ids = wanted
    else:
        ids = [t for t in ids if config.skip_reason(env, t) is None]
    return ids[: config.limit] if config.limit else ids


def left_out_tasks(env: TaskSource, config: JobOptions) -> dict[str, str]:
    """The tasks of the split the run leaves out, with why (`config.skip_reason`); {} when it uses all."""
    if config.task:
        return {}
    reasons = {t: config.skip_reason(env, t) for t in env.task_ids(config.split)}
    return {t: reason for t, reason in reasons.items() if reason is not None}


def pending_jobs(
    env: TaskSource, config: JobOptions, writer: RunWriter, *, retry_errors: bool = False
) -> list[tuple[str, int]]:
    """The (task, trial) pairs a run still has to do."""
    return [
        (task_id, trial)
        for task_id in select_tasks(env, config)
        for trial in range(config.trials)
        if (task_id, trial) not in writer.done or (retry_errors and (task_id, trial) in writer.errored)
    ]


def error_record(task_id: str, trial: int, seed: int, exc: BaseException) -> dict[str, Any]:
    """The record of a task that failed outside the conversation (e.g. a bug building it)."""
    return {
        "task_id": task_id, "trial": trial, "seed": seed, "status": "error", "termination": "error",
        "reward": None, "partial_reward": 0.0, "error": f"{type(exc).__name__}: {exc}",
    }  # fmt: skip


async def record_jobs(
    jobs: list[tuple[str, int]],
    worker: Callable[[tuple[str, int]], Awaitable[dict[str, Any]]],
    config: JobOptions,
    writer: RunWriter,
    *,
    on_record: Callable[[dict[str, Any]], None] | None,
    on_error: Callable[[str, int, int, BaseException], dict[str, Any]],
) -> int:
    """Run `worker` on every (task, trial) job, `config.concurrency` at a time, appending each record to
    `writer` as it finishes (`on_error(task_id, trial, seed, exc)` builds the record of a job that raised).
    An `EndpointError` stops the run and records nothing for unfinished jobs. Returns the number of jobs."""

    def on_result(job: tuple[str, int], record: dict[str, Any]) -> None:
        if writer.write(record) and on_record is not None:  # a duplicate (a retried Ray task) is dropped
            on_record(record)

    await run_pool(
        jobs,
        worker,
        concurrency=config.concurrency,
        on_result=on_result,
        on_error=lambda job, exc: on_error(job[0], job[1], config.seed + job[1], exc),
        stop_on=(EndpointError,),  # the endpoint is down or unusable: stop, record nothing unfinished
    )
    return len(jobs)
