"""`josh harvest toolwoz`: JOSH trees on ToolWOZ tasks, with every option of `josh eval` (declared once)."""

from __future__ import annotations

from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import typer

from josh.benchmarks.toolwoz import Endpoints, ToolWOZBenchmark
from josh.benchmarks.toolwoz_harvest import harvest
from josh.benchmarks.toolwoz_harvest_config import ToolWOZHarvestConfig
from josh.cli.console import user_errors
from josh.cli.run_flow import OnRecord, RunJob, execute, resolve_run, run_command
from josh.envs.toolwoz import ToolWOZEnvironment
from josh.runner import RunWriter

harvest_app = typer.Typer(
    help="Harvest training data with JOSH (beam search over agent turns).", no_args_is_help=True
)


@harvest_app.command("toolwoz")
@user_errors
@run_command(ToolWOZHarvestConfig)
def harvest_toolwoz(
    *,
    options: dict[str, Any],
    config_file: Path | None,
    out_path: Path | None,
    resume: bool,
    retry_errors: bool,
) -> None:
    """Grow one JOSH tree per ToolWOZ task: a beam search over agent turns in simulation.

    Each agent turn branches in two until the beam (--beam, 8) is full; the first branch whose turn makes a
    correct goal call (a sparse reward) becomes the new root and the others are pruned (kept in the record);
    the path of rewarded turns is the golden path. The agent samples (--temperature above 0); the customer
    keeps its own temperature, so siblings diverge through the agent; siblings' identical first requests go
    as one request with n choices (--no-use-n to turn off).

    With no --model this is a DRY RUN on josh's scripted mock endpoint, with --mock-mistake-rate 0.3 unless
    told otherwise, so trees branch and some branches fail. Every option of `josh eval toolwoz` applies (the
    run file, --resume, endpoints, protocol, concurrency, cache, retries). One JSONL line per tree after the
    run file's header. Exit status as for `josh eval toolwoz`: 0, 3 (some trees ended in an error), 4 (the
    endpoint stopped the run), 130 (interrupted), 1 (bad options or input).
    """
    if "model" not in options and "mock_mistake_rate" not in options and not config_file:
        options = {**options, "mock_mistake_rate": DRY_RUN_MISTAKE_RATE}
    cfg = resolve_run(ToolWOZHarvestConfig, options, config_file, resume=resume, retry_errors=retry_errors)

    def work(
        env: ToolWOZEnvironment, endpoints: Endpoints, writer: RunWriter, on_record: OnRecord
    ) -> Awaitable[int]:
        return harvest(cfg, env, endpoints, writer, on_record=on_record, retry_errors=retry_errors)

    execute(
        RunJob(
            "harvest toolwoz",
            "trees",
            cfg,
            out_path,
            resume,
            retry_errors,
            work,
            "trees-toolwoz",
            ToolWOZBenchmark(),
        )
    )


DRY_RUN_MISTAKE_RATE = 0.3  # an oracle that never errs gives trees with nothing to prune
