"""`josh data ...`: fetch, inspect and list the ToolWOZ data."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from josh.cli.console import err, out, report, user_errors
from josh.envs.toolwoz import paths
from josh.envs.toolwoz.env import SPLIT_CHOICES, ToolWOZEnvironment
from josh.envs.toolwoz.fetch import copy_into_cache
from josh.envs.toolwoz.store import build, cache_is_valid

app = typer.Typer(help="Fetch, inspect and list the ToolWOZ data.", no_args_is_help=True)

API_ORDER = (
    "search_restaurant",
    "book_restaurant",
    "search_hotel",
    "book_hotel",
    "search_attraction",
    "search_train",
    "book_train",
)


@app.command()
@user_errors
def fetch(
    force: Annotated[bool, typer.Option("--force", help="Rebuild even when a valid cache exists.")] = False,
    wheel: Annotated[
        Path | None,
        typer.Option(help="Use this josh-train 0.1.4 wheel instead of downloading it (it is verified)."),
    ] = None,
) -> None:
    """Download the official data (PyPI josh-train==0.1.4), verify it and build the cache.

    Idempotent: a valid cache is left alone. Every command that needs the data runs this lazily.
    Safe to run concurrently: a second fetch waits for the first (it says so), then uses its cache.
    The cache lives in $JOSH_CACHE, else the user cache directory (see `josh data path`).
    """
    if wheel is not None:
        if not wheel.is_file():
            raise typer.BadParameter(f"{wheel} is not a file", param_hint="--wheel")
        copy_into_cache(wheel, report)
        force = True
    if not force and cache_is_valid():
        report(f"the ToolWOZ cache is ready: {paths.database_path()}")
        return
    with err.status("fetching and building ToolWOZ…"):
        path = build(report=report, force=True)
    report(f"ready: {path}")


@app.command("path")
def path_cmd() -> None:
    """Print where the ToolWOZ cache lives."""
    out.print(str(paths.toolwoz_dir()))


@app.command()
@user_errors
def info() -> None:
    """Split sizes and goal-call counts per API."""
    env = ToolWOZEnvironment.load(report)
    # No outer edge: the table then fits an 80-column terminal whole.
    table = Table(
        title="ToolWOZ tasks and goal calls (josh-train 0.1.4 data)", title_justify="left", show_edge=False
    )
    table.add_column("")
    for split in SPLIT_CHOICES:
        table.add_column(split, justify="right")
    counts: dict[str, Counter[str]] = {}
    for split in SPLIT_CHOICES:
        counts[split] = Counter(g.name for task in env.tasks(split) for g in task.goal_calls)
    table.add_row("tasks", *[f"{len(env.task_ids(s)):,}" for s in SPLIT_CHOICES])
    table.add_row("goal calls", *[f"{sum(counts[s].values()):,}" for s in SPLIT_CHOICES], end_section=True)
    for api in API_ORDER:
        table.add_row(api, *[f"{counts[s].get(api, 0):,}" for s in SPLIT_CHOICES])
    out.print(table)
    out.print(f"[dim]cache: {env.store.path}[/dim]")


@app.command()
@user_errors
def tasks(
    split: Annotated[str, typer.Option(help=f"One of: {', '.join(SPLIT_CHOICES)}.")] = "test",
    turns: Annotated[
        bool, typer.Option("--turns/--no-turns", help="Include the original MultiWOZ turns.")
    ] = False,
) -> None:
    """Print the tasks of a split as JSONL, one task a line.

    Each line starts {"task_id", "split", "goal_calls": [{"name", "arguments"}]} where `arguments` are the
    goal's non-empty parameters; the booking returns, goal messages and requested slots follow.
    """
    env = ToolWOZEnvironment.load(report)
    ids = env.task_ids(split)
    write = sys.stdout.write
    for task_id in ids:
        task = env.task(task_id)
        line = task.to_dict(split=split if split != "all" else task.split, turns=turns)
        write(json.dumps(line, ensure_ascii=False) + "\n")
