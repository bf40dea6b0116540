"""tau2-bench for the run commands (`josh eval tau2`; `josh harvest tau2` in `josh.benchmarks.tau2.harvest`):
function-calling agents on its tasks (airline, retail, telecom) with tau2's customer.

Everything but the pieces is the shared machinery of `josh.benchmarks` (task selection, endpoints, the pool,
the run file, the eval and harvest loops): the agent gets the domain policy in tau2's system prompt
(`--prompts tau2`, read from the installed package) or josh's wording, the customer is the goal simulator
with the task's own system prompt (tau2's guidelines and scenario), the session opens with tau2's greeting
and ends on tau2's stop tokens, and the reward is tau2's evaluator (`final_reward`). Telecom's customer has
tools of its own (its phone: the session's `user_tools`): the rollout hands them to the customer each turn,
as for any session that offers them (at most `USER_TOOL_ROUNDS` rounds of calls a turn).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from josh.benchmarks.endpoints import Endpoints, open_endpoints
from josh.benchmarks.evaluation import evaluate as generic_evaluate
from josh.benchmarks.run_options import RunOptions
from josh.benchmarks.tau2.config import Tau2EvalConfig, Tau2RunOptions
from josh.benchmarks.tau2.prompts import agent_system_prompt
from josh.benchmarks.tau2.setups import Tau2Setups
from josh.envs.tau2 import Tau2Environment, Tau2Task
from josh.mock import MockScript
from josh.mock.tau2_script import tau2_script
from josh.runner import RunWriter


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
    jobs: list[tuple[str, int]] | None = None,
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
        jobs=jobs,
    )
