"""What a benchmark gives the run commands for each (task, trial): a fresh session, the customer, the goals,
and the agent. `josh.benchmarks.evaluation` runs one conversation on it, `josh.benchmarks.harvest` grows one
JOSH tree; ToolWOZ (`ToolWOZSetups`) and tau2 (`Tau2Setups`) are the implementations."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, Protocol

from josh.agents.base import Agent
from josh.llm.base import ChatModel
from josh.rollout.branch import ForkableSession
from josh.users.simulators import UserSimulator


def _no_final_reward(session: Any, ended: bool | None) -> float | None:
    return None


@dataclass
class TaskSetup:
    """One (task, trial), ready to run."""

    session: ForkableSession  # a fresh session of the task
    user: UserSimulator  # the customer (of every branch, in a tree)
    goals: list[str]  # the goals' keys, as `goal_key` names the session's reward events
    domains: list[str]  # the benchmark's domains the task belongs to (the summary groups by them)
    goal_key: Callable[[Any], str] = attrgetter("name")
    # The goal calls an evaluation's record lists (None: `goals`): tau2 records tool names, its trees keys.
    goal_calls: list[str] | None = None
    # The benchmark's own score of a tree's golden leaf, where it has one beside the goals, given whether the
    # customer ended that conversation (None: the search stopped at the last goal, without --finish).
    final_reward: Callable[[Any, bool | None], float | None] = field(default=_no_final_reward)


class TaskSetups(Protocol):
    """What a benchmark gives its runs: the agent, and each (task, trial)'s session, customer and goals."""

    @property
    def tools(self) -> list[dict[str, Any]]: ...  # the tool schemas the agent is given natively ([]: none)

    def build_agent(self, model: ChatModel, trial: int) -> Agent: ...

    def setup(self, task_id: str, trial: int, user_model: ChatModel | None) -> TaskSetup: ...
