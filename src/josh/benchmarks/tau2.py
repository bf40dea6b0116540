"""`josh eval tau2`: function-calling agents on tau2-bench tasks (airline, retail, telecom) with tau2's customer.

Everything but the pieces is ToolWOZ's machinery (`josh.benchmarks.toolwoz`: task selection, endpoints, the
pool, the run file): the agent gets the domain policy in tau2's system prompt (`--prompts tau2`, read from
the installed package) or josh's wording, the customer is the goal simulator with the task's own system
prompt (tau2's guidelines and scenario), the session opens with tau2's greeting and ends on tau2's stop
tokens, and the reward is tau2's evaluator (`final_reward`). Telecom's customer has tools of its own (its
phone: the session's `user_tools`): the rollout hands them to the customer each turn, as for any session
that offers them (at most `USER_TOOL_ROUNDS` rounds of calls a turn).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from josh.agents import FunctionCallingAgent
from josh.benchmarks import harvest as generic
from josh.benchmarks.evaluation import evaluate as generic_evaluate
from josh.benchmarks.setup import TaskSetup
from josh.benchmarks.tau2_config import TAU2_MODEL_CALLS, Tau2EvalConfig, Tau2HarvestConfig, Tau2RunOptions
from josh.benchmarks.toolwoz import Endpoints, open_endpoints
from josh.benchmarks.toolwoz_config import RunOptions
from josh.envs.tau2 import Tau2Environment, Tau2Session, Tau2Task
from josh.envs.tau2.data_model import STOP_TOKENS, GoalAction
from josh.envs.tau2.reference_text import tau2_agent_system_prompt
from josh.llm.base import ChatModel
from josh.mock import MockCall, MockScript
from josh.runner import RunWriter
from josh.search import SearchConfig
from josh.users import GoalUserSimulator

# josh's wording of the agent's instructions (--prompts josh); {policy} is the domain policy.
JOSH_AGENT_PROMPT = """You are a customer service agent. Help the customer, following the policy below to the letter.
Each turn, do one thing: write one message to the customer, or make one tool call (arguments as a JSON object).

<policy>
{policy}
</policy>"""


def agent_system_prompt(prompts: str, policy: str) -> str:
    """The agent's system prompt: tau2's own text around the policy, or josh's wording."""
    if prompts == "tau2":
        return tau2_agent_system_prompt(policy)
    return JOSH_AGENT_PROMPT.replace("{policy}", policy)


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


def _pieces(text: str, count: int = 3) -> tuple[str, ...]:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    size = max(1, -(-len(lines) // count))
    return tuple(" ".join(lines[i : i + size]) for i in range(0, len(lines), size))


def tau2_script(task: Tau2Task) -> MockScript:
    """What josh's scripted mock plays on a tau2 task: the agent's goal actions in order, then the facts the
    task wants communicated; the customer answers tau2's prompt with its scenario, a piece a turn, and ends
    with tau2's stop token once the agent is done. The customer's own goal actions (telecom's phone) are
    its tool calls, in the ground truth's order: each run of them comes after the agent's actions before it
    (the agent hands over), and the agent's next actions after them."""
    calls: list[MockCall] = []
    customer: list[tuple[int, tuple[MockCall, ...]]] = []
    for goal in task.goal_actions:
        call = MockCall(goal.name, dict(goal.arguments))
        if goal.requestor == "assistant":
            calls.append(call)
        elif customer and customer[-1][0] == len(calls):  # the same run of the customer's actions
            customer[-1] = (len(calls), (*customer[-1][1], call))
        else:
            customer.append((len(calls), (call,)))
    return MockScript(
        task_id=task.task_id,
        agent_calls=tuple(calls),
        customer_lines=_pieces(task.user_instructions),
        goal_text=task.user_instructions,
        closing=" ".join(task.communicate_info),
        customer_prompt=task.user_system_prompt,
        stop=STOP_TOKENS[0],
        # the oracle makes two calls a turn, and hands over for each run of the customer's actions: the
        # customer waits for all of them
        patience=len(calls) + len(customer) + 2,
        customer_actions=tuple(customer),
    )


@dataclass(frozen=True)
class Tau2Benchmark:
    """One tau2 domain for the run commands (`josh.benchmarks.benchmark.Benchmark`)."""

    domain: str

    @property
    def name(self) -> str:
        return f"tau2 {self.domain}"

    def load(self, report: Callable[[str], None]) -> Tau2Environment:
        report(f"loading tau2's {self.domain} domain")
        return Tau2Environment.load(self.domain)

    def check(self, cfg: RunOptions) -> None:
        if cfg.prompts == "tau2":
            agent_system_prompt("tau2", "")  # tau2's text is read from its files: a problem shows now

    def setups(self, cfg: RunOptions, env: Tau2Environment) -> Tau2Setups:
        assert isinstance(cfg, Tau2RunOptions)
        return Tau2Setups(cfg, env)

    def open_endpoints(self, cfg: RunOptions, env: Tau2Environment) -> Endpoints:
        return open_endpoints(cfg, env, script=tau2_script)

    def mock_script(self, task: Tau2Task) -> MockScript:
        return tau2_script(task)


async def evaluate(
    config: Tau2EvalConfig,
    env: Tau2Environment,
    endpoints: Endpoints,
    writer: RunWriter,
    *,
    on_record: Callable[[dict[str, Any]], None] | None = None,
    retry_errors: bool = False,
) -> int:
    """Run every tau2 (task, trial) not yet in `writer` (see `josh.benchmarks.evaluation`)."""
    return await generic_evaluate(
        config,
        env,
        Tau2Setups(config, env),
        endpoints,
        writer,
        on_record=on_record,
        retry_errors=retry_errors,
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


async def harvest(
    config: Tau2HarvestConfig,
    env: Tau2Environment,
    endpoints: Endpoints,
    writer: RunWriter,
    *,
    on_record: Callable[[dict[str, Any]], None] | None = None,
    retry_errors: bool = False,
    search: SearchConfig | None = None,
) -> int:
    """Grow a JOSH tree for every tau2 (task, trial) not yet in `writer` (see `josh.benchmarks.harvest`)."""
    return await generic.harvest(
        config, env, Tau2Setups(config, env), endpoints, writer, on_record=on_record,
        retry_errors=retry_errors, search=search,
    )  # fmt: skip
