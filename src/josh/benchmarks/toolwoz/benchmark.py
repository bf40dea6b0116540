"""ToolWOZ for the run commands (`josh eval toolwoz`; `josh harvest toolwoz` is in
`josh.benchmarks.toolwoz.harvest`): its environment, its checks, its models and what josh's scripted mock
plays on its tasks, and the evaluation of its tasks with the shared loop (`josh.benchmarks.evaluation`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from josh.benchmarks.endpoints import Endpoints, open_endpoints
from josh.benchmarks.evaluation import evaluate as generic_evaluate
from josh.benchmarks.run_options import RunOptions
from josh.benchmarks.toolwoz.config import ToolWOZEvalConfig
from josh.benchmarks.toolwoz.prompts import toolwoz_prompts
from josh.benchmarks.toolwoz.setups import ToolWOZSetups
from josh.envs.toolwoz import Task, ToolWOZEnvironment
from josh.mock import MockScript, toolwoz_script
from josh.runner import RunWriter


async def evaluate(
    config: ToolWOZEvalConfig,
    env: ToolWOZEnvironment,
    endpoints: Endpoints,
    writer: RunWriter,
    *,
    on_record: Callable[[dict[str, Any]], None] | None = None,
    retry_errors: bool = False,
    jobs: list[tuple[str, int]] | None = None,
) -> int:
    """Run every ToolWOZ (task, trial) not yet in `writer` (see `josh.benchmarks.evaluation`)."""
    setups = ToolWOZSetups(config, env, toolwoz_prompts(config.prompts))
    return await generic_evaluate(
        config, env, setups, endpoints, writer, on_record=on_record, retry_errors=retry_errors, jobs=jobs
    )


@dataclass(frozen=True)
class ToolWOZBenchmark:
    """ToolWOZ for the run commands (`josh.benchmarks.benchmark.Benchmark`)."""

    name: str = "ToolWOZ"

    def load(self, report: Callable[[str], None]) -> ToolWOZEnvironment:
        return ToolWOZEnvironment.load(report)

    def check(self, cfg: RunOptions) -> None:
        toolwoz_prompts(
            cfg.prompts
        )  # the paper's text comes from the wheel: a problem shows now, not mid-run

    def setups(self, cfg: RunOptions, env: ToolWOZEnvironment) -> ToolWOZSetups:
        return ToolWOZSetups(cfg, env, toolwoz_prompts(cfg.prompts))

    def open_endpoints(self, cfg: RunOptions, env: ToolWOZEnvironment) -> Endpoints:
        return open_endpoints(cfg, env)

    def mock_script(self, task: Task) -> MockScript:
        return toolwoz_script(task)
