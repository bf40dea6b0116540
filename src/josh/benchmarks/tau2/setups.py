"""tau2's (task, trial)s for the run commands (`josh.benchmarks.setup.TaskSetups`): a function-calling agent
with the domain policy in its system prompt, tau2's customer (the goal simulator with the task's own system
prompt, tau2's stop tokens, and telecom's phone tools: the session's `user_tools`), and tau2's evaluator as a
tree's final reward."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from josh.agents import FunctionCallingAgent
from josh.benchmarks.run_options import RunOptions
from josh.benchmarks.setup import TaskSetup
from josh.benchmarks.tau2.config import TAU2_MODEL_CALLS, Tau2RunOptions
from josh.benchmarks.tau2.prompts import agent_system_prompt
from josh.envs.tau2 import Tau2Environment, Tau2Session
from josh.envs.tau2.data_model import GoalAction
from josh.llm.base import ChatModel
from josh.users import GoalUserSimulator


def build_agent(
    config: RunOptions, model: ChatModel, tools: list[dict[str, Any]], trial: int, policy: str
) -> FunctionCallingAgent:
    """The agent of one conversation: function calling, the domain policy in its system prompt."""
    return FunctionCallingAgent(
        model=model,
        tools=tools,
        temperature=config.temperature,
        max_tokens=config.max_tokens,
        seed=config.seed + trial,
        strict_errors=config.strict_errors,
        max_model_calls=TAU2_MODEL_CALLS,
        system_prompt=agent_system_prompt(config.prompts, policy),
        parse_text_tool_calls=config.parse_text_tool_calls,
        reference_checks=False,  # the paper's crash checks are ToolWOZ's protocol
    )


def build_user(config: RunOptions, model: ChatModel, session: Tau2Session, trial: int) -> GoalUserSimulator:
    """tau2's customer: the goal simulator with the task's system prompt, no turn prompt, tau2's stop tokens
    (the agent's greeting comes first in the conversation: the session's `opening`)."""
    return GoalUserSimulator(
        model,
        [],
        temperature=config.user_temperature,
        max_tokens=config.user_max_tokens,
        seed=config.seed + trial,
        system_prompt=session.task.user_system_prompt,
        turn_prompt=None,
        stop_tokens=session.stop_tokens,
        max_tool_rounds=config.user_tool_rounds,
    )


def golden_final_reward(session: Tau2Session, ended: bool | None) -> float:
    """tau2's evaluation of the golden leaf's conversation (the database, the actions, what the agent told
    the customer): with `--finish`, of the whole conversation, 0 unless the customer ended it (`ended`, as
    for an evaluation); without (`ended` None), as it stood at the last goal action, as if the customer had
    ended it there. A tree's reward counts goal actions only; tau2's 1.0 also needs the rest."""
    return session.score() if ended is None else session.final_reward(ended)


@dataclass(frozen=True)
class Tau2Setups:
    """One tau2 domain for the run commands (`josh.benchmarks.setup.TaskSetups`): goals are the task's goal
    actions, keyed `tool#action_id` (tasks often repeat a tool); an evaluation records their tool names."""

    config: Tau2RunOptions
    env: Tau2Environment

    @property
    def tools(self) -> list[dict[str, Any]]:
        return self.env.tool_schemas

    def build_agent(self, model: ChatModel, trial: int) -> FunctionCallingAgent:
        return build_agent(self.config, model, self.env.tool_schemas, trial, self.env.policy)

    def setup(self, task_id: str, trial: int, user_model: ChatModel | None) -> TaskSetup:
        session = self.env.session(task_id, strict=self.config.strict_errors)
        assert user_model is not None  # tau2's customer is always a model (or the mock's script)
        return TaskSetup(
            session=session,
            user=build_user(self.config, user_model, session, trial),
            goals=[g.key for g in session.task.goal_actions],
            domains=[self.config.domain],
            goal_key=_goal_key,
            goal_calls=[g.name for g in session.task.goal_calls],
            final_reward=golden_final_reward,
        )


def _goal_key(goal: GoalAction) -> str:
    return goal.key
