"""What a gym episode is made of, per benchmark: a fresh session of the task, its customer, its goals, how far
the goals are met (a step's reward is how much that moved), and the agent's suggested system prompt.

ToolWOZ (`ToolWOZTasks`): the customer is the paper's `goal` or `guide` simulator on a model, the `replay` of
the original dialogue (no model), or josh's `scripted` mock customer (no model); progress is the score
(`ToolWOZSession.score`: met goal calls / goal calls, judged as `josh score` judges them).
tau2 (`Tau2Tasks`): the customer is tau2's (the goal simulator with the task's own system prompt and tau2's
stop tokens; telecom's customer acts on its phone) on a model, or the `scripted` mock; progress is the share of
the task's goal actions met; tau2's own evaluation is the final score.

Customers are built here from `josh.users` (not from `josh.benchmarks`, which sits above: the run commands
build theirs the same way, from the same simulators and prompt sets: `josh.rollout.prompt_sets`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from josh.errors import JoshError
from josh.llm.base import ChatModel
from josh.rollout.prompt_sets import toolwoz_prompts
from josh.users import GoalUserSimulator, GuideUserSimulator, ReplayUserSimulator
from josh.users.simulators import UserSimulator

UserKind = Literal["goal", "guide", "replay", "scripted"]
USER_KINDS: tuple[str, ...] = ("goal", "guide", "replay", "scripted")
TOOLWOZ_MAX_TURNS = 15  # the paper's: messages of both sides together
TAU2_MAX_TURNS = 40  # `josh eval tau2`'s default (the agent's greeting counts)


@dataclass
class Episode:
    """One episode's start: a fresh session, its customer, and its goals' keys."""

    session: Any
    user: UserSimulator
    goals: list[str]


class GymTasks(Protocol):
    """A benchmark as the gym env sees it (`ToolWOZTasks`, `Tau2Tasks`)."""

    name: str
    environment: Any  # the `josh.envs` environment (`josh.envs.checker.check_env` checks it)
    max_turns: int

    def task_ids(self, split: str) -> list[str]: ...

    def system_prompt(self) -> str: ...

    def start(self, task_id: str, seed: int | None) -> Episode: ...

    def progress(self, session: Any) -> float: ...

    def final_info(self, session: Any) -> dict[str, Any]: ...


def _needs_model(kind: str, model: ChatModel | None, benchmark: str) -> ChatModel:
    if model is None:
        raise JoshError(
            f"the {kind!r} customer of {benchmark} talks through a model: pass user_model=... (a ChatModel, a "
            "model name with base_url=..., or 'hf:PATH'), or user='scripted' for josh's scripted customer"
        )
    return model


@dataclass
class ToolWOZTasks:
    """ToolWOZ's tasks for the gym env."""

    environment: Any  # ToolWOZEnvironment
    user: UserKind
    user_model: ChatModel | None
    prompts: Literal["josh", "paper"] = "josh"
    max_turns: int = TOOLWOZ_MAX_TURNS
    name: str = "toolwoz"
    _scripted: ChatModel | None = field(default=None, repr=False)

    def task_ids(self, split: str) -> list[str]:
        return list(self.environment.task_ids(split))

    def system_prompt(self) -> str:
        return toolwoz_prompts(self.prompts).fc_system

    def _customer(self, task: Any, seed: int | None) -> UserSimulator:
        turns = [(t.role, t.text) for t in task.turns]
        if self.user == "replay":
            return ReplayUserSimulator(turns)
        prompts = toolwoz_prompts(self.prompts)
        seeded = {"seed": 42 if seed is None else seed}
        if self.user == "guide":
            model = _needs_model("guide", self.user_model, self.name)
            guide = prompts.user_options("guide")
            return GuideUserSimulator(model, task.goal_messages, turns, **guide, **seeded)
        if self.user == "scripted":
            model = self._scripted_model()
        else:
            model = _needs_model("goal", self.user_model, self.name)
        return GoalUserSimulator(model, task.goal_messages, **prompts.user_options("goal"), **seeded)

    def _scripted_model(self) -> ChatModel:
        if self._scripted is None:
            from josh.mock.scripted_backend import scripted_model

            self._scripted = scripted_model(self.environment)
        return self._scripted

    def start(self, task_id: str, seed: int | None) -> Episode:
        task = self.environment.task(task_id)
        return Episode(
            session=self.environment.session(task_id),
            user=self._customer(task, seed),
            goals=[g.name for g in task.goal_calls],
        )

    def progress(self, session: Any) -> float:
        return float(session.score())

    def final_info(self, session: Any) -> dict[str, Any]:
        return {}


@dataclass
class Tau2Tasks:
    """One tau2 domain's tasks for the gym env."""

    environment: Any  # Tau2Environment
    user: UserKind
    user_model: ChatModel | None
    max_turns: int = TAU2_MAX_TURNS
    user_tool_rounds: int = 10  # rounds of the customer's own tool calls a turn may make (telecom)
    name: str = "tau2"
    _scripted: ChatModel | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.user in ("guide", "replay"):
            raise JoshError(
                f"tau2 has no original dialogue for a {self.user!r} customer: use user='goal' (tau2's "
                "customer, on a model) or user='scripted'"
            )

    def task_ids(self, split: str) -> list[str]:
        return list(self.environment.task_ids(split))

    def system_prompt(self) -> str:
        from josh.envs.tau2.reference_text import tau2_agent_system_prompt

        return tau2_agent_system_prompt(self.environment.policy)

    def start(self, task_id: str, seed: int | None) -> Episode:
        session = self.environment.session(task_id)
        if self.user == "scripted":
            if self._scripted is None:
                from josh.mock.scripted_backend import scripted_model
                from josh.mock.tau2_script import tau2_script

                self._scripted = scripted_model(self.environment, script=tau2_script)
            model = self._scripted
        else:
            model = _needs_model("goal", self.user_model, self.name)
        user = GoalUserSimulator(
            model,
            [],
            seed=42 if seed is None else seed,
            system_prompt=session.task.user_system_prompt,
            turn_prompt=None,
            stop_tokens=session.stop_tokens,
            max_tool_rounds=self.user_tool_rounds,
        )
        return Episode(session=session, user=user, goals=[g.key for g in session.task.goal_actions])

    def progress(self, session: Any) -> float:
        total = len(session.task.goal_actions)
        return len(session.reward_events) / total if total else 0.0

    def final_info(self, session: Any) -> dict[str, Any]:
        """tau2's evaluation of the conversation (`RewardInfo`, as JSON)."""
        return {"reward_info": session.evaluate().model_dump(mode="json")}
