"""ToolWOZ's (task, trial)s for the run commands: the paper's agents (ReAct or function calling) and
customers (goal, guide, replay) with the run's prompts, and a fresh session of each task; goals are the task's
goal calls, named by their API (`josh.benchmarks.setup.TaskSetups`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from josh.agents import FunctionCallingAgent, ReactAgent
from josh.agents.base import Agent
from josh.benchmarks.run_options import RunOptions
from josh.benchmarks.setup import TaskSetup
from josh.benchmarks.toolwoz.prompts import ToolWOZPrompts
from josh.envs.toolwoz import Task, ToolWOZEnvironment
from josh.envs.toolwoz.env import Crediting
from josh.llm.base import ChatModel
from josh.users import GoalUserSimulator, GuideUserSimulator, ReplayUserSimulator
from josh.users.simulators import UserSimulator


def build_agent(
    config: RunOptions, model: ChatModel, tools: list[dict[str, Any]], trial: int, prompts: ToolWOZPrompts
) -> Agent:
    """The agent of one conversation: the paper's ReAct or function-calling agent with the run's prompts."""
    common: dict[str, Any] = {
        "model": model,
        "tools": tools,
        "temperature": config.temperature,
        "max_tokens": config.max_tokens,
        "seed": config.seed + trial,
        "strict_errors": config.strict_errors,
        **prompts.agent_options(config.agent),
    }
    if config.agent == "react":
        return ReactAgent(**common)
    return FunctionCallingAgent(**common, parse_text_tool_calls=config.parse_text_tool_calls)


def build_user(
    config: RunOptions, model: ChatModel | None, task: Task, trial: int, prompts: ToolWOZPrompts
) -> UserSimulator:
    """The customer of one conversation."""
    turns = [(t.role, t.text) for t in task.turns]
    if config.user == "replay":
        return ReplayUserSimulator(turns)
    assert model is not None
    common = {
        "temperature": config.user_temperature,
        "max_tokens": config.user_max_tokens,
        "seed": config.seed + trial,
        **prompts.user_options(config.user),
    }
    if config.user == "guide":
        return GuideUserSimulator(model, task.goal_messages, turns, **common)
    return GoalUserSimulator(model, task.goal_messages, **common)


def toolwoz_domains(goal_names: list[str]) -> list[str]:
    """A ToolWOZ task's domains: the suffixes of its goal calls' API names (`book_hotel` -> `hotel`)."""
    return sorted({name.split("_", 1)[-1] for name in goal_names})


@dataclass(frozen=True)
class ToolWOZSetups:
    """ToolWOZ for the run commands (`josh.benchmarks.setup.TaskSetups`): the paper's agents and customers;
    goals are the task's goal calls, named by their API."""

    config: RunOptions
    env: ToolWOZEnvironment
    prompts: ToolWOZPrompts
    crediting: Crediting = "call"  # when a met goal stops being pending (`ToolWOZSession`); harvests: "turn"

    @property
    def tools(self) -> list[dict[str, Any]]:
        return self.env.tool_schemas if self.config.agent == "fc" else []

    def build_agent(self, model: ChatModel, trial: int) -> Agent:
        return build_agent(self.config, model, self.env.tool_schemas, trial, self.prompts)

    def setup(self, task_id: str, trial: int, user_model: ChatModel | None) -> TaskSetup:
        task = self.env.task(task_id)
        goals = [g.name for g in task.goal_calls]
        return TaskSetup(
            session=self.env.session(task_id, strict=self.config.strict_errors, crediting=self.crediting),
            user=build_user(self.config, user_model, task, trial, self.prompts),
            goals=goals,
            domains=toolwoz_domains(goals),
        )
