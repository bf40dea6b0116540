"""A JOSH harvest on any benchmark: one tree per (task, trial), many at once, recorded append-only like an
evaluation (`josh harvest toolwoz`, `josh harvest tau2`).

Each tree starts from a fresh session of its task and grows with `josh.search.JoshSearch`; its branches are
`josh.rollout.branch.ConversationBranch`es over the run's agent and customer. One `CallLedger` per tree counts
every model call (a call with `n` choices once). The record is `josh.search.TreeRecord`, one line per
(task, trial) after the run file's header. What differs between benchmarks (the session, the agent, the
customer, how goals are named) comes from its `TaskSetups` (`josh.benchmarks.setup`).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from josh.agents.base import Agent
from josh.benchmarks.endpoints import Endpoints
from josh.benchmarks.harvest_options import TEMPERATURE_ABOVE_0
from josh.benchmarks.jobs import JobOptions, pending_jobs, record_jobs
from josh.benchmarks.setup import TaskSetups
from josh.errors import JoshError
from josh.llm.base import ChatModel
from josh.llm.ledger import CallLedger
from josh.rollout.branch import ConversationBranch
from josh.runner import RunWriter
from josh.search import JoshSearch, SearchConfig, TreeRecord


@runtime_checkable
class HarvestLoopOptions(JobOptions, Protocol):
    """What the harvest loop reads of a benchmark's options: the jobs' (task selection, trials, seed,
    concurrency), the search's (`search_config()`), the agent's sampling temperature and the agent's name
    for the record (every `HarvestOptions` mixed into a benchmark's run options has them). The rest (the
    agent, the customer) its `TaskSetups` read."""

    @property
    def agent(self) -> str: ...  # the agent's protocol, recorded in each tree ("react", "fc")
    @property
    def temperature(self) -> float: ...  # the agent's, above 0 so that siblings differ

    def search_config(self) -> SearchConfig:
        """The search's settings (beam, steps, `n` choices, finishing the golden conversation)."""
        ...


async def harvest_tree(
    config: HarvestLoopOptions,
    source: TaskSetups,
    endpoints: Endpoints,
    task_id: str,
    trial: int,
    *,
    search: SearchConfig | None = None,
) -> TreeRecord:
    """Grow the JOSH tree of one (task, trial) (`config`: a benchmark's run options with `HarvestOptions`).
    Raises `EndpointError` when the endpoint is unusable."""
    search = search or config.search_config()
    started = time.perf_counter()
    ledger = CallLedger()  # every model call of the tree, whatever happens after it

    first: list[Agent] = []

    def make_agent(model: ChatModel) -> Agent:
        """The tree's agents differ only in their chat model: a copy of the first, bound to `model`. Building
        one renders the system prompt (for ReAct every tool schema as JSON), most of a fork's time if
        repeated."""
        if not first:
            first.append(source.build_agent(model, trial))
            return first[0]
        agent = copy.copy(first[0])
        agent.model = model  # type: ignore[attr-defined]  # every agent josh builds is a `ModelAgent`
        return agent

    user_model = ledger.wrap(endpoints.user, "user") if endpoints.user is not None else None
    task = source.setup(task_id, trial, user_model)
    root = ConversationBranch(
        task.session,
        ledger.wrap(endpoints.agent, "agent"),
        make_agent,
        task.user,
        metadata={"task_id": task_id, "trial": str(trial)},
        use_n=search.use_n and not search.sequential,  # a sibling waits for the others: they must run at once
        goal_key=task.goal_key,
    )
    tree = await JoshSearch(search).run(root, task.goals)
    notes = [f"node {node.id}: {note}" for node in tree.nodes for note in node.notes]
    golden = tree.golden_branch
    ended = golden.customer_ended if golden is not None and search.finish else None
    if search.finish and tree.ended == "all_goals" and not ended:
        notes.append(
            "every goal was met, but the customer did not end the golden conversation (the steps ran out, "
            "or a turn failed)"
        )
    return TreeRecord(
        task_id=task_id,
        trial=trial,
        seed=config.seed + trial,
        status="success",
        reward=tree.reward,
        goal_calls=task.goals,
        reward_events=tree.reward_events,
        golden_reward_events=tree.credited,
        domains=task.domains,
        final_reward=task.final_reward(golden.session, ended) if golden is not None else None,
        system_prompt=getattr(root.agent, "system_prompt", ""),
        tools=source.tools,
        agent=config.agent,
        nodes=tree.nodes,
        steps=tree.steps,
        ended=tree.ended,
        agent_usage=ledger.usage("agent"),
        user_usage=ledger.usage("user"),
        model_calls=list(ledger.calls),
        latency_s=round(time.perf_counter() - started, 4),
        notes=notes,
    )


def harvest_error_record(task_id: str, trial: int, seed: int, exc: BaseException) -> dict[str, Any]:
    """The record of a tree that failed outside the simulation (a bug): no nodes, reward None."""
    return TreeRecord(
        task_id=task_id,
        trial=trial,
        seed=seed,
        status="error",
        reward=None,
        error=f"{type(exc).__name__}: {exc}",
    ).model_dump(mode="json")


async def harvest(
    config: HarvestLoopOptions,
    env: Any,
    source: TaskSetups,
    endpoints: Endpoints,
    writer: RunWriter,
    *,
    on_record: Callable[[dict[str, Any]], None] | None = None,
    retry_errors: bool = False,
    search: SearchConfig | None = None,
    jobs: list[tuple[str, int]] | None = None,
) -> int:
    """Grow a tree for every (task, trial) of `env` not yet in `writer` (and, with `retry_errors`, those that
    ended in an error); append each record as it finishes. Returns the number of trees grown.

    `search` overrides the search settings of `config` (e.g. `sequential=True` for a benchmark); `jobs`: grow
    exactly these (task, trial) trees instead (a Ray worker's share, `josh.benchmarks.ray_jobs`).
    """
    if config.temperature <= 0:  # a config built without validation
        raise JoshError(f"--temperature {config.temperature}: {TEMPERATURE_ABOVE_0}")
    if jobs is None:
        jobs = pending_jobs(env, config, writer, retry_errors=retry_errors)
    search = search or config.search_config()

    async def worker(job: tuple[str, int]) -> dict[str, Any]:
        task_id, trial = job
        record = await harvest_tree(config, source, endpoints, task_id, trial, search=search)
        return record.model_dump(mode="json")

    return await record_jobs(jobs, worker, config, writer, on_record=on_record, on_error=harvest_error_record)
