"""`josh harvest tau2`: the generic JOSH harvest (`josh.benchmarks.harvest`) on tau2 tasks, with `josh eval
tau2`'s agent and customer; goals are the task's goal actions, keyed `tool#action_id`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from josh.benchmarks import harvest as generic
from josh.benchmarks.endpoints import Endpoints
from josh.benchmarks.tau2.config import Tau2HarvestConfig
from josh.benchmarks.tau2.setups import Tau2Setups
from josh.envs.tau2 import Tau2Environment
from josh.runner import RunWriter
from josh.search import SearchConfig


async def harvest(
    config: Tau2HarvestConfig,
    env: Tau2Environment,
    endpoints: Endpoints,
    writer: RunWriter,
    *,
    on_record: Callable[[dict[str, Any]], None] | None = None,
    retry_errors: bool = False,
    search: SearchConfig | None = None,
    jobs: list[tuple[str, int]] | None = None,
) -> int:
    """Grow a JOSH tree for every tau2 (task, trial) not yet in `writer` (see `josh.benchmarks.harvest`)."""
    return await generic.harvest(
        config, env, Tau2Setups(config, env), endpoints, writer, on_record=on_record,
        retry_errors=retry_errors, search=search, jobs=jobs,
    )  # fmt: skip
