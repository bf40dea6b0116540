"""`josh harvest toolwoz`: the generic JOSH harvest (`josh.benchmarks.harvest`) on ToolWOZ tasks, with the
paper's agents and customers; goals are the task's goal calls, named by their API."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from josh.benchmarks import harvest as generic
from josh.benchmarks.endpoints import Endpoints
from josh.benchmarks.harvest import harvest_error_record
from josh.benchmarks.toolwoz.config import ToolWOZHarvestConfig
from josh.benchmarks.toolwoz.prompts import ToolWOZPrompts, toolwoz_prompts
from josh.benchmarks.toolwoz.setups import ToolWOZSetups, toolwoz_domains
from josh.envs.toolwoz import ToolWOZEnvironment
from josh.runner import RunWriter
from josh.search import SearchConfig, TreeRecord

__all__ = ["harvest", "harvest_error_record", "harvest_tree", "toolwoz_domains"]


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
    source = ToolWOZSetups(config, env, prompts or toolwoz_prompts(config.prompts), config.crediting)
    return await generic.harvest_tree(config, source, endpoints, task_id, trial, search=search)


async def harvest(
    config: ToolWOZHarvestConfig,
    env: ToolWOZEnvironment,
    endpoints: Endpoints,
    writer: RunWriter,
    *,
    on_record: Callable[[dict[str, Any]], None] | None = None,
    retry_errors: bool = False,
    search: SearchConfig | None = None,
    jobs: list[tuple[str, int]] | None = None,
) -> int:
    """Grow a tree for every ToolWOZ (task, trial) not yet in `writer` (see `josh.benchmarks.harvest`)."""
    source = ToolWOZSetups(config, env, toolwoz_prompts(config.prompts), config.crediting)
    return await generic.harvest(
        config, env, source, endpoints, writer, on_record=on_record, retry_errors=retry_errors, search=search,
        jobs=jobs,
    )  # fmt: skip
