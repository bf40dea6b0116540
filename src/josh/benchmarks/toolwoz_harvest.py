"""`josh harvest toolwoz`: the generic JOSH harvest (`josh.benchmarks.harvest`) on ToolWOZ tasks, with the
paper's agents and customers; goals are the task's goal calls, named by their API."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from josh.agents.base import Agent
from josh.benchmarks import harvest as generic
from josh.benchmarks.harvest import TreeTask, harvest_error_record
from josh.benchmarks.toolwoz import Endpoints, build_agent, build_user
from josh.benchmarks.toolwoz_harvest_config import ToolWOZHarvestConfig
from josh.benchmarks.toolwoz_prompts import ToolWOZPrompts, toolwoz_prompts
from josh.envs.toolwoz import ToolWOZEnvironment
from josh.llm.base import ChatModel
from josh.runner import RunWriter
from josh.search import SearchConfig, TreeRecord

__all__ = ["ToolWOZTrees", "harvest", "harvest_error_record", "harvest_tree", "toolwoz_domains"]


def toolwoz_domains(goal_names: list[str]) -> list[str]:
    """A ToolWOZ task's domains: the suffixes of its goal calls' API names (`book_hotel` -> `hotel`)."""
    return sorted({name.split("_", 1)[-1] for name in goal_names})


@dataclass(frozen=True)
class ToolWOZTrees:
    """ToolWOZ for the harvest (`josh.benchmarks.harvest.TreeSource`)."""

    config: ToolWOZHarvestConfig
    env: ToolWOZEnvironment
    prompts: ToolWOZPrompts

    @property
    def tools(self) -> list[dict[str, Any]]:
        return self.env.tool_schemas if self.config.agent == "fc" else []

    def build_agent(self, model: ChatModel, trial: int) -> Agent:
        return build_agent(self.config, model, self.env.tool_schemas, trial, self.prompts)

    def tree_task(self, task_id: str, trial: int, user_model: ChatModel | None) -> TreeTask:
        task = self.env.task(task_id)
        goals = [g.name for g in task.goal_calls]
        return TreeTask(
            session=self.env.session(task_id, strict=self.config.strict_errors),
            user=build_user(self.config, user_model, task, trial, self.prompts),
            goals=goals,
            domains=toolwoz_domains(goals),
        )


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
    source = ToolWOZTrees(config, env, prompts or toolwoz_prompts(config.prompts))
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
) -> int:
    """Grow a tree for every ToolWOZ (task, trial) not yet in `writer` (see `josh.benchmarks.harvest`)."""
    source = ToolWOZTrees(config, env, toolwoz_prompts(config.prompts))
    return await generic.harvest(
        config, env, source, endpoints, writer, on_record=on_record, retry_errors=retry_errors, search=search
    )
