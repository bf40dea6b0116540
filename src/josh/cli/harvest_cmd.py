"""`josh harvest NAME` (one command per registered benchmark): JOSH trees on its tasks, with every option of
`josh eval NAME` (declared once)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from josh.benchmarks.benchmark import BenchmarkCommands
from josh.benchmarks.harvest import harvest_error_record
from josh.cli.benchmarks import BENCHMARKS
from josh.cli.console import user_errors
from josh.cli.run_flow import RunJob, benchmark_work, execute, resolve_run, run_command

harvest_app = typer.Typer(
    help="Harvest training data with JOSH (beam search over agent turns) on ToolWOZ or tau2-bench.",
    no_args_is_help=True,
)


def add_harvest_command(entry: BenchmarkCommands) -> None:
    """`josh harvest NAME` for one registered benchmark: its options, its help, its harvest."""

    def command(
        *,
        options: dict[str, Any],
        config_file: Path | None,
        out_path: Path | None,
        resume: bool,
        retry_errors: bool,
    ) -> None:
        options = with_dry_run_mistakes(options, config_file)
        cfg = resolve_run(entry.harvest_config, options, config_file, resume=resume, retry_errors=retry_errors)

        job = RunJob(
            f"harvest {entry.name}", "trees", cfg, out_path, resume, retry_errors,
            benchmark_work(entry.harvest, entry.benchmark(cfg), cfg, harvest_error_record, retry_errors),
            f"trees-{entry.out_prefix(cfg)}", entry.benchmark(cfg),
        )  # fmt: skip
        execute(job)

    command.__name__ = command.__qualname__ = f"harvest_{entry.name}"
    command.__doc__ = entry.harvest_help
    harvest_app.command(entry.name)(user_errors(run_command(entry.harvest_config)(command)))


DRY_RUN_MISTAKE_RATE = 0.3  # an oracle that never errs gives trees with nothing to prune


def with_dry_run_mistakes(options: dict[str, Any], config_file: Path | None) -> dict[str, Any]:
    """A harvest's dry run makes mistakes (--mock-mistake-rate 0.3) unless told otherwise. A --base-url
    without --model is no dry run: it names a real endpoint, whose only model the run then uses."""
    dry = "model" not in options and "base_url" not in options
    if dry and "mock_mistake_rate" not in options and not config_file:
        return {**options, "mock_mistake_rate": DRY_RUN_MISTAKE_RATE}
    return options


for _entry in BENCHMARKS:
    add_harvest_command(_entry)
