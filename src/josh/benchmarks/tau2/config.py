"""The options of `josh eval tau2` and `josh harvest tau2`: the shared run options that apply to tau2, and
tau2's own."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import model_validator

from josh.benchmarks.harvest_options import SEARCH, HarvestOptions
from josh.benchmarks.run_options import AGENT, CUSTOMER, PROTOCOL, TASKS, RunOptions, _opt
from josh.users.simulators import USER_TOOL_ROUNDS

Tau2Domain = Literal["airline", "retail", "telecom"]
Tau2Split = Literal["train", "test", "base", "all"]
DEFAULT_TAU2_DOMAIN = "airline"  # what `josh serve-mock --benchmark tau2` plays without --domain

# tau2 stops a simulation after 200 steps, counting every message: tool calls and tool results too. josh's
# limit counts what the customer and the agent say to each other (the greeting included), the tool traffic
# being bounded per agent turn (TAU2_MODEL_CALLS): 40 spoken messages is well past what tau2's base tasks
# need (their longest gold solutions take about 15 exchanges) and ends a looping conversation early.
TAU2_MAX_TURNS = 40
# Model calls one agent turn may make (each a tool call, until the reply): tau2 has no per-turn limit, its
# agents often look up several records before answering.
TAU2_MODEL_CALLS = 10
# tau2's own default user simulator model (tau2/config.py, DEFAULT_LLM_USER; a test reads the installed file).
TAU2_USER_MODEL = "gpt-4.1"


class Tau2RunOptions(RunOptions):
    """What every tau2 run command shares (`josh eval tau2`, `josh harvest tau2`): the shared run options
    that apply to tau2, and tau2's own."""

    DEFAULT_USER_MODEL: ClassVar[str] = TAU2_USER_MODEL

    domain: Tau2Domain = _opt(
        "airline",
        "tau2 domain: airline, retail or telecom (telecom's customer acts on their own phone with tools: "
        "the customer's model is offered them and its calls run on the conversation's device).",
        TASKS,
    )
    split: Tau2Split = _opt(  # type: ignore[assignment]
        "test", "Task split: test (tau2's held-out tasks), train, base (train + test) or all.", TASKS
    )
    agent: Literal["react", "fc"] = _opt(
        "fc", "Native function calling (tau2's agent); 'react' is ToolWOZ's text protocol: refused.", AGENT
    )
    user: Literal["goal", "guide", "replay"] = _opt(
        "goal",
        "Customer: 'goal' plays tau2's user simulator (tau2's system prompt with the task's scenario); "
        "'guide' and 'replay' need ToolWOZ's source dialogues: refused.",
        CUSTOMER,
    )
    user_model: str | None = _opt(
        None,
        f"Customer model (default: {TAU2_USER_MODEL} on OpenAI, tau2's own default user model; 'scripted' in "
        "a dry run); 'hf:PATH[+ADAPTER]' runs a local model in-process (the agent's instance when it is the "
        "same spec).",
        CUSTOMER,
    )
    prompts: Literal["tau2", "josh"] = _opt(  # type: ignore[assignment]
        "tau2",
        "The agent's system prompt around the domain policy: 'tau2' is tau2's own text, read at run time "
        "from the installed tau2 package; 'josh' is josh's wording of the same instructions. The customer "
        "always gets tau2's prompt (the task's).",
        PROTOCOL,
    )
    user_tool_rounds: int = _opt(
        USER_TOOL_ROUNDS,
        "Rounds of tool calls the customer may make in one turn before it must reply (telecom's customer "
        "acting on its phone); one that goes past them ends the conversation as the turn limit does.",
        CUSTOMER,
        ge=1,
    )
    strict_errors: bool = _opt(
        False,
        "--strict-errors: a tool call tau2 cannot represent (a name that is not text, arguments that are not "
        "a JSON object) ends the conversation with reward 0 (termination agent_error, or user_error when the "
        "customer made it); --lenient-errors (default): the caller is shown tau2's error result and the "
        "conversation goes on.",
        PROTOCOL,
        flag="--strict-errors/--lenient-errors",
    )

    @model_validator(mode="after")
    def _what_tau2_supports(self) -> Tau2RunOptions:
        if self.agent == "react":
            raise ValueError(
                "--agent react is ToolWOZ's text protocol (its prompt describes ToolWOZ's tools); tau2 runs "
                "function-calling agents: drop --agent or pass --agent fc"
            )
        if self.user != "goal":
            raise ValueError(
                f"--user {self.user} needs ToolWOZ's source dialogues; tau2's customer is --user goal"
            )
        return self


class Tau2EvalConfig(Tau2RunOptions):
    """A whole `josh eval tau2` run."""

    trials: int = _opt(
        1, "Conversations per task; the summary reports pass^k for k up to this (tau2's metric).", TASKS, ge=1
    )
    max_turns: int = _opt(
        TAU2_MAX_TURNS,
        "Messages per conversation, agent and customer together, the agent's greeting included (tau2's "
        "200-step limit also counts tool calls and results).",
        TASKS,
        ge=1,
    )


class Tau2HarvestConfig(HarvestOptions, Tau2RunOptions):
    """A whole `josh harvest tau2` run: one JOSH tree per (task, trial)."""

    PANELS: ClassVar[tuple[str, ...]] = (SEARCH, *RunOptions.PANELS)

    split: Tau2Split = _opt(  # type: ignore[assignment]
        "train",
        "Task split: train (what JOSH harvests), test (tau2's held-out tasks), base (train + test) or all.",
        TASKS,
    )

    finish: bool = _opt(
        True,
        "Once every goal action is met, the golden conversation plays on alone until the customer ends it "
        "or --max-steps runs out, so the agent's closing turns are kept and final_reward is tau2's own "
        "score of the whole conversation (what the agent told the customer included; 0 when the customer "
        "did not end it). --no-finish stops at the last goal action, as the paper's search does, and "
        "scores the golden leaf as if the customer had ended there.",
        SEARCH,
    )

    def skip_reason(self, env: Any, task_id: str) -> str | None:
        # A task with no goal actions (the right behaviour is to change nothing) has no sparse reward:
        # JOSH could never credit a turn, so its tree would say nothing.
        if not env.task(task_id).goal_actions:
            return "has no goal actions (JOSH has no sparse reward to search on)"
        return None
