"""`josh harvest toolwoz`: one JOSH tree per ToolWOZ task, many at once, recorded append-only like `evaluate`.

Each tree starts from a fresh session of its task and grows with `josh.search.JoshSearch`; its branches are
`josh.rollout.branch.ConversationBranch`es over the run's agent and customer. One `CallLedger` per tree counts
every model call (a call with `n` choices once). The record is `josh.search.TreeRecord`, one line per
(task, trial) after the run file's header.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from typing import Any

from josh.agents.base import Agent
from josh.benchmarks.toolwoz import Endpoints, build_agent, build_user, pending_jobs, record_jobs
from josh.benchmarks.toolwoz_harvest_config import TEMPERATURE_ABOVE_0, ToolWOZHarvestConfig
from josh.benchmarks.toolwoz_prompts import ToolWOZPrompts, toolwoz_prompts
from josh.envs.toolwoz import ToolWOZEnvironment
from josh.errors import JoshError
from josh.llm.base import ChatModel
from josh.llm.ledger import CallLedger
from josh.rollout.branch import ConversationBranch
from josh.runner import RunWriter
from josh.search import JoshSearch, SearchConfig, TreeRecord


async def harvest_tree(
    config: ToolWOZHarvestConfig,
    env: ToolWOZEnvironment,
    endpoints: Endpoints,
    task_id: str,
    trial: int,
    *,
    search: SearchConfig | None = None,
    prompts: ToolWOZPrompts | None = None,
) -> TreeRecord:
    """Grow the JOSH tree of one (task, trial). Raises `EndpointError` when the endpoint is unusable."""
    search = search or config.search_config()
    prompts = prompts or toolwoz_prompts(config.prompts)
    task = env.task(task_id)
    started = time.perf_counter()
    ledger = CallLedger()  # every model call of the tree, whatever happens after it

    first: list[Agent] = []

    def make_agent(model: ChatModel) -> Agent:
        """The tree's agents differ only in their chat model: a copy of the first, bound to `model`. Building
        one renders the ReAct system prompt (every tool schema as JSON), most of a fork's time if repeated."""
        if not first:
            first.append(build_agent(config, model, env.tool_schemas, trial, prompts))
            return first[0]
        agent = copy.copy(first[0])
        agent.model = model  # type: ignore[attr-defined]  # both paper agents are `ModelAgent`s
        return agent

    user_model = ledger.wrap(endpoints.user, "user") if endpoints.user is not None else None
    root = ConversationBranch(
        env.session(task_id, strict=config.strict_errors),
        ledger.wrap(endpoints.agent, "agent"),
        make_agent,
        build_user(config, user_model, task, trial, prompts),
        metadata={"task_id": task_id, "trial": str(trial)},
        use_n=search.use_n and not search.sequential,  # a sibling waits for the others: they must run at once
    )
    goals = [g.name for g in task.goal_calls]
    tree = await JoshSearch(search).run(root, goals)
    notes = [f"node {node.id}: {note}" for node in tree.nodes for note in node.notes]
    return TreeRecord(
        task_id=task_id,
        trial=trial,
        seed=config.seed + trial,
        status="success",
        reward=tree.reward,
        goal_calls=goals,
        reward_events=tree.reward_events,
        golden_reward_events=tree.credited,
        system_prompt=getattr(root.agent, "system_prompt", ""),
        tools=env.tool_schemas if config.agent == "fc" else [],
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
    config: ToolWOZHarvestConfig,
    env: ToolWOZEnvironment,
    endpoints: Endpoints,
    writer: RunWriter,
    *,
    on_record: Callable[[dict[str, Any]], None] | None = None,
    retry_errors: bool = False,
    search: SearchConfig | None = None,
) -> int:
    """Grow a tree for every (task, trial) not yet in `writer` (and, with `retry_errors`, those that ended in
    an error); append each record as it finishes. Returns the number of trees grown.

    `search` overrides the search settings of `config` (e.g. `sequential=True` for a benchmark).
    """
    if config.temperature <= 0:  # a config built without validation
        raise JoshError(f"--temperature {config.temperature}: {TEMPERATURE_ABOVE_0}")
    jobs = pending_jobs(env, config, writer, retry_errors=retry_errors)
    prompts = toolwoz_prompts(config.prompts)
    search = search or config.search_config()

    async def worker(job: tuple[str, int]) -> dict[str, Any]:
        task_id, trial = job
        record = await harvest_tree(config, env, endpoints, task_id, trial, search=search, prompts=prompts)
        return record.model_dump(mode="json")

    return await record_jobs(jobs, worker, config, writer, on_record=on_record, on_error=harvest_error_record)
