"""What a gym episode is made of, per benchmark: a fresh session of the task, its customer, its goals, how far
the goals are met (a step's reward is how much that moved), and the agent's suggested system prompt.

ToolWOZ (`ToolWOZTasks`): the customer is the paper's `goal` or `guide` simulator on a model, the `replay` of
the original dialogue (no model), or josh's `scripted` mock customer (no model); progress is the score
(`ToolWOZSession.score`: met goal calls / goal calls, judged as `josh score` judges them).
tau2 (`Tau2Tasks`): the customer is tau2's (the goal simulator with the task's own system prompt and tau2's
stop tokens; telecom's customer acts on its phone) on a model, or the `scripted` mock; progress is the share of
the task's goal actions met; tau2's own evaluation is the final score.

Customers are built here from `josh.users` (not from `josh.benchmarks`, which sits above: the run commands
build theirs the same way, from the same simulators and prompts).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from josh.agents.prompts import FC_SYSTEM_PROMPT
from josh.errors import JoshError
from josh.llm.base import ChatModel
from josh.users import GoalUserSimulator, GuideUserSimulator, ReplayUserSimulator
from josh.users import prompts as josh_user_prompts
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
        return self._prompt_texts()["fc_system"]

    def _prompt_texts(self) -> dict[str, str]:
        if self.prompts == "paper":
            from josh.envs.toolwoz.reference_text import reference_prompts

            paper = reference_prompts()
            return {
                "fc_system": paper.fc_system,
                "opening_prompt": paper.user_opening,
                "system_prompt": paper.user_system,
                "turn_prompt": paper.user_turn,
                "guide_prompt": paper.guide,
            }
        return {
            "fc_system": FC_SYSTEM_PROMPT,
            "opening_prompt": josh_user_prompts.OPENING_PROMPT,
            "system_prompt": josh_user_prompts.SYSTEM_PROMPT,
            "turn_prompt": josh_user_prompts.TURN_PROMPT,
            "guide_prompt": josh_user_prompts.GUIDE_PROMPT,
        }

    def _customer(self, task: Any, seed: int | None) -> UserSimulator:
        turns = [(t.role, t.text) for t in task.turns]
        if self.user == "replay":
            return ReplayUserSimulator(turns)
        texts = self._prompt_texts()
        seeded = {"seed": 42 if seed is None else seed}
        if self.user == "guide":
            model = _needs_model("guide", self.user_model, self.name)
            return GuideUserSimulator(model, task.goal_messages, turns, guide_prompt=texts["guide_prompt"], **seeded)
        if self.user == "scripted":
            model = self._scripted_model()
        else:
            model = _needs_model("goal", self.user_model, self.name)
        return GoalUserSimulator(
            model,
            task.goal_messages,
            opening_prompt=texts["opening_prompt"],
            system_prompt=texts["system_prompt"],
            turn_prompt=texts["turn_prompt"],
            **seeded,
        )

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
