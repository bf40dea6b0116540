"""An evaluation on any benchmark: one conversation per (task, trial), many at once, recorded append-only
(`josh eval toolwoz`, `josh eval tau2`). What differs between benchmarks comes from its `TaskSetups`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from josh.benchmarks.endpoints import Endpoints
from josh.benchmarks.jobs import JobOptions, error_record, pending_jobs, record_jobs
from josh.benchmarks.setup import TaskSetups
from josh.llm.ledger import CallLedger
from josh.rollout import run_conversation
from josh.runner import RunWriter


@runtime_checkable
class EvalOptions(JobOptions, Protocol):
    """What the evaluation loop reads of a benchmark's options: the jobs' (task selection, trials, seed,
    concurrency) and the length of a conversation. The rest (the agent, the customer) its `TaskSetups` read."""

    @property
    def max_turns(self) -> int: ...  # messages per conversation, customer and agent together


async def evaluate(
    config: EvalOptions,
    env: Any,
    setups: TaskSetups,
    endpoints: Endpoints,
    writer: RunWriter,
    *,
    on_record: Callable[[dict[str, Any]], None] | None = None,
    retry_errors: bool = False,
    jobs: list[tuple[str, int]] | None = None,
) -> int:
    """Run every (task, trial) of `env` not yet in `writer` (and, with `retry_errors`, those that ended in an
    error); append each record as it finishes. Returns the number of conversations run. `config`: a
    benchmark's evaluation options (`EvalOptions`). `jobs`: run exactly these (task, trial) pairs instead (a
    Ray worker's share, `josh.benchmarks.ray_jobs`)."""
    if jobs is None:
        jobs = pending_jobs(env, config, writer, retry_errors=retry_errors)

    async def worker(job: tuple[str, int]) -> dict[str, Any]:
        task_id, trial = job
        ledger = CallLedger()  # every model call of the conversation, whatever happens after it
        agent = setups.build_agent(ledger.wrap(endpoints.agent, "agent"), trial)
        user_model = ledger.wrap(endpoints.user, "user") if endpoints.user is not None else None
        task = setups.setup(task_id, trial, user_model)
        record = await run_conversation(
            task_id,
            task.goal_calls if task.goal_calls is not None else task.goals,
            task.session,  # type: ignore[arg-type]  # every benchmark's session is a full `ToolSession`
            agent,
            task.user,
            max_turns=config.max_turns,
            trial=trial,
            seed=config.seed + trial,
            ledger=ledger,
        )
        return record.model_copy(update={"domains": task.domains}).model_dump(mode="json")

    return await record_jobs(jobs, worker, config, writer, on_record=on_record, on_error=error_record)
