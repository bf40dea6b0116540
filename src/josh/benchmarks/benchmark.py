"""What a benchmark gives the commands that run it (`josh eval NAME`, `josh harvest NAME`): its environment,
its checks before any work, and its models (`Benchmark`), and the commands themselves (`BenchmarkCommands`:
its options, its eval and harvest wiring, its help). The run itself (run file, resume, progress, summary, exit
status) is the same for every benchmark (`josh.cli.run_flow`); each folder under `josh/benchmarks/`
(`toolwoz/`, `tau2/`) is one implementation, registered once in `josh.cli.benchmarks`."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from josh.benchmarks.endpoints import Endpoints
from josh.benchmarks.run_options import RunOptions
from josh.benchmarks.setup import TaskSetups
from josh.mock import MockScript
from josh.runner import RunWriter


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


class RunWork(Protocol):
    """A command's own part of a run: every pending (task, trial) of `env`, each record written to `writer`
    and handed to `on_record`; returns how many ran (the benchmark's `evaluate` or `harvest`). `jobs`: exactly
    these (task, trial) pairs instead of the pending ones (a Ray worker's share)."""

    def __call__(
        self,
        config: Any,
        env: Any,
        endpoints: Endpoints,
        writer: RunWriter,
        *,
        on_record: Callable[[dict[str, Any]], None] | None = None,
        retry_errors: bool = False,
        jobs: list[tuple[str, int]] | None = None,
    ) -> Awaitable[int]: ...


@dataclass(frozen=True)
class BenchmarkCommands:
    """One benchmark's commands, as its folder declares them and `josh.cli.benchmarks` registers them:
    `josh eval NAME`, `josh harvest NAME` and `josh serve-mock --benchmark NAME`."""

    name: str  # the commands' word: `josh eval toolwoz`
    eval_config: type[RunOptions]  # the options of `josh eval NAME` (one flag per field)
    harvest_config: type[RunOptions]  # the options of `josh harvest NAME`: those plus `HarvestOptions`
    evaluate: RunWork  # a conversation per (task, trial), with the shared loop (`josh.benchmarks.evaluation`)
    harvest: RunWork  # a JOSH tree per (task, trial), with the shared loop (`josh.benchmarks.harvest`)
    benchmark: Callable[[Any], Benchmark]  # the benchmark a run's resolved options name
    out_prefix: Callable[[Any], str]  # of a run's default file name: runs/<prefix>-<split>-...; a harvest's
    # is "trees-" and this
    eval_help: str  # the --help of `josh eval NAME` (a docstring: its first line is the command's summary)
    harvest_help: str  # the --help of `josh harvest NAME`
    served: Callable[[str | None], Benchmark]  # what `josh serve-mock --benchmark NAME [--domain D]` plays
    served_help: str  # how serve-mock's --benchmark help names its tasks: "ToolWOZ's"
