"""A run's jobs spread over a Ray cluster (`josh eval NAME --ray ADDRESS`, `josh harvest NAME --ray ADDRESS`).

Each pending (task, trial) is one Ray task: a worker process loads the benchmark's environment (once per
process), opens the run's endpoints and runs the benchmark's own loop (`evaluate` or `harvest`, josh's async
driver) on that one job, then sends its record back. On the driver the tasks are awaited through the run's
ordinary pool (`record_jobs`), at most `--concurrency` at once, so the one writer appends each record as it
arrives and the progress line moves as in a local run. What travels: the resolved options, the benchmark
(its name and domain) and the job to the worker; the record (plain JSON) back.

A worker that dies mid-job loses nothing: Ray runs its task again on another worker (`TASK_RETRIES`), and the
writer keeps one record per (task, trial). An endpoint that goes down stops the run as it does locally (exit
4, nothing unfinished recorded). A dry run's mock endpoint runs on the driver: the workers are pointed at it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from josh.benchmarks.benchmark import Benchmark, RunWork
from josh.benchmarks.endpoints import MOCK_AGENT_MODEL, MOCK_USER_MODEL, Endpoints
from josh.benchmarks.jobs import JobOptions, pending_jobs, record_jobs
from josh.benchmarks.run_options import RunOptions
from josh.llm import base as llm_errors
from josh.llm import event_loop
from josh.llm.base import EndpointError
from josh.runner import RunWriter
from josh.runner.ray_cluster import call_remote, import_ray, remote

OnError = Callable[[str, int, int, BaseException], dict[str, Any]]


@dataclass(frozen=True)
class RayShare:
    """What a worker needs to run any job of the run: the benchmark's loop, the benchmark and the options."""

    work: RunWork  # the benchmark's `evaluate` or `harvest` (a module's function: it travels by name)
    benchmark: Benchmark
    config: RunOptions


@dataclass(frozen=True)
class StoppedBy:
    """A worker's job was stopped by its endpoint (`EndpointError`): the driver stops the run with it."""

    error: str  # the class's name in `josh.llm.base`
    message: str

    def exception(self) -> EndpointError:
        kind = getattr(llm_errors, self.error, None)
        if not (isinstance(kind, type) and issubclass(kind, EndpointError)):
            kind = EndpointError
        return kind(self.message)


class _Records:
    """A worker's writer: keeps the job's records to send back (the driver's `RunWriter` appends them)."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []
        self.done: set[tuple[str, int]] = set()
        self.errored: set[tuple[str, int]] = set()

    def write(self, record: dict[str, Any]) -> bool:
        self.records.append(record)
        return True


_ENVIRONMENTS: dict[Benchmark, Any] = {}  # per worker process: loaded by its first job


@dataclass(frozen=True)
class ShareResult:
    """What a worker sends back: the jobs' records, and the calls each server answered for them."""

    records: list[dict[str, Any]]
    calls_per_endpoint: dict[str, dict[str, int]]


def run_share(share: RayShare, jobs: list[tuple[str, int]]) -> ShareResult | StoppedBy:
    """On a Ray worker: run `jobs` with the benchmark's own loop and return their records and calls per
    server (or why the endpoint stopped them)."""
    env = _ENVIRONMENTS.get(share.benchmark)
    if env is None:
        env = _ENVIRONMENTS[share.benchmark] = share.benchmark.load(lambda line: None)
    records = _Records()
    calls: dict[str, dict[str, int]] = {}

    async def run() -> None:
        endpoints = share.benchmark.open_endpoints(share.config, env)
        try:
            await share.work(share.config, env, endpoints, records, jobs=jobs)  # type: ignore[arg-type]
        finally:
            calls.update(endpoints.calls_per_endpoint())
            await endpoints.aclose()

    try:
        event_loop.run(run())
    except EndpointError as exc:
        return StoppedBy(type(exc).__name__, str(exc))
    return ShareResult(records.records, calls)


def for_workers(config: RunOptions, endpoints: Endpoints) -> RunOptions:
    """The options the workers run with: a dry run's agent and customer are the driver's mock endpoint
    (127.0.0.1: workers on this machine reach it), not a mock of their own."""
    if endpoints.mock is None:
        return config
    url = endpoints.mock.base_url
    update: dict[str, Any] = {"model": MOCK_AGENT_MODEL, "base_url": [url]}  # a list, as validated
    if config.user != "replay":
        update.update(user_model=MOCK_USER_MODEL, user_base_url=[url])
    return config.model_copy(update=update)


async def run_on_ray(
    work: RunWork,
    benchmark: Benchmark,
    config: Any,
    env: Any,
    endpoints: Endpoints,
    writer: RunWriter,
    *,
    on_record: Callable[[dict[str, Any]], None] | None,
    on_error: OnError,
    retry_errors: bool = False,
) -> int:
    """Run every pending (task, trial) of `env` as a Ray task on the cluster this process is connected to
    (`josh.runner.ray_cluster.ray_cluster`), appending each record to `writer` as it comes back. `config`:
    the benchmark's run options (`JobOptions`, `RunOptions`); `on_error` builds the record of a job whose task
    failed (its worker died more than `TASK_RETRIES` times). Returns the number of jobs."""
    ray = import_ray()
    options: JobOptions = config
    jobs = pending_jobs(env, options, writer, retry_errors=retry_errors)
    share = ray.put(RayShare(work, benchmark, for_workers(config, endpoints)))
    task = remote(run_share)

    async def worker(job: tuple[str, int]) -> dict[str, Any]:
        try:
            result = await call_remote(task, share, [job])
        except ray.exceptions.RayTaskError as exc:  # raised by the job's code outside its loop: shown short
            cause = exc.cause if isinstance(exc.cause, Exception) else RuntimeError(str(exc).splitlines()[0])
            raise cause from None
        if isinstance(result, StoppedBy):
            raise result.exception()
        endpoints.add_calls(result.calls_per_endpoint)  # the summary's calls per server, counted on the workers
        (record,) = result.records
        return record

    return await record_jobs(jobs, worker, options, writer, on_record=on_record, on_error=on_error)
