"""What a benchmark gives the commands that run it (`josh eval`, `josh harvest`): its environment, its checks
before any work, and its models. The run itself (run file, resume, progress, summary, exit status) is the
same for every benchmark (`josh.cli.run_flow`); ToolWOZ and tau2 are the two implementations."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from josh.benchmarks.setup import TaskSetups
from josh.benchmarks.toolwoz import Endpoints
from josh.benchmarks.toolwoz_config import RunOptions
from josh.mock import MockScript


class Benchmark(Protocol):
    """One benchmark a run command works on."""

    @property
    def name(self) -> str: ...  # how the summary names it: "ToolWOZ", "tau2 airline"

    def load(self, report: Callable[[str], None]) -> Any:
        """The environment (`task_ids(split)`, `task(id)`, `session(id, strict=)`, `tool_schemas`)."""
        ...

    def check(self, cfg: RunOptions) -> None:
        """Fail now, with `JoshError`, on what would fail mid-run (e.g. prompts that cannot be read)."""
        ...

    def setups(self, cfg: RunOptions, env: Any) -> TaskSetups:
        """The agent and each (task, trial)'s session, customer and goals, as the run builds them."""
        ...

    def open_endpoints(self, cfg: RunOptions, env: Any) -> Endpoints:
        """The run's models; for a dry run, josh's scripted mock playing this benchmark's tasks."""
        ...

    def mock_script(self, task: Any) -> MockScript:
        """What josh's scripted mock plays on one of the environment's tasks (`josh serve-mock`)."""
        ...
