"""`josh eval toolwoz`, `josh report` and `josh serve-mock`."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from josh.benchmarks.toolwoz import (
    Endpoints,
    check_keys,
    discover_models,
    evaluate,
    mock_config,
    open_endpoints,
    pending_jobs,
    preflight,
    select_tasks,
)
from josh.benchmarks.toolwoz_config import SCRIPTED, ServeMockOptions, ToolWOZEvalConfig
from josh.benchmarks.toolwoz_prompts import toolwoz_prompts
from josh.cli.console import err, out, report, user_errors
from josh.cli.live import LiveTotals
from josh.cli.options import ADAPTATIONS_KEY, config_for_file, resolve, with_options
from josh.cli.render import print_comparison, print_summary, settings_table
from josh.envs.toolwoz import ToolWOZEnvironment
from josh.errors import JoshError
from josh.llm.base import EndpointError
from josh.mock import MockServer
from josh.runner import RunContents, RunWriter, open_run, read_run, summarize
from josh.runner.compare import compare_runs
from josh.runner.runfile import check_writable
from josh.runner.summary import latest_by_key

eval_app = typer.Typer(help="Evaluate an agent on a benchmark.", no_args_is_help=True)


def sidecar(path: Path, kind: str) -> Path:
    """RUN.jsonl -> RUN.summary.json / RUN.config.json."""
    stem = path.name[: -len(".jsonl")] if path.name.endswith(".jsonl") else path.name
    return path.with_name(f"{stem}.{kind}.json")


@eval_app.command("toolwoz")
@user_errors
@with_options(ToolWOZEvalConfig)
def eval_toolwoz(
    config: Annotated[
        Path | None,
        typer.Option(
            help="YAML (or JSON) file of options, keys as the flag names (max-tokens: 256); flags typed here "
            "override it. A run's RUN.config.json can be fed back."
        ),
    ] = None,
    out_path: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="Run file (JSONL), appended to as each conversation finishes "
            "\\[default: runs/toolwoz-<split>-<agent>-<model>-<time>.jsonl].",
            show_default=False,
        ),
    ] = None,
    resume: Annotated[
        bool,
        typer.Option("--resume", help="Continue --out where it stopped, skipping finished conversations."),
    ] = False,
    retry_errors: Annotated[
        bool,
        typer.Option(
            "--retry-errors", help="With --resume: run again the conversations that ended in an error."
        ),
    ] = False,
    *,
    options: dict[str, Any],
) -> None:
    """Benchmark a tool-calling agent on ToolWOZ with a simulated customer.

    With no --model this is a DRY RUN against josh's scripted mock endpoint (an oracle agent and a scripted
    customer, not language models), started in-process: it exercises the whole pipeline for real. Point it
    at any OpenAI-compatible endpoint with --model NAME [--base-url URL]; the key comes from $OPENAI_API_KEY
    or --api-key-env. By default the protocol is the paper's: its prompts, read from the official
    josh-train 0.1.4 wheel, and --strict-errors.

    Results are appended to --out as each conversation finishes; --resume continues a stopped run;
    RUN.summary.json and RUN.config.json are written beside it. Exit status: 0 when every conversation
    was scored, 3 when some ended in an error (count on the last line), 4 when the endpoint went down and
    the run stopped, 130 when interrupted, 1 for bad options or input.
    """
    if retry_errors and not resume:
        raise JoshError("--retry-errors only applies with --resume (it re-runs errors recorded in --out)")
    cfg = resolve(ToolWOZEvalConfig, options, config)
    found = asyncio.run(discover_models(cfg))
    if found:
        report(
            "using the endpoint's only model: "
            + ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in found.items())
        )
        cfg = resolve(ToolWOZEvalConfig, {**options, **found}, config)
    check_keys(cfg)
    env = ToolWOZEnvironment.load(report)
    toolwoz_prompts(cfg.prompts)  # the paper's text comes from the wheel: a problem shows now, not mid-run
    task_ids = select_tasks(env, cfg)
    if out_path is None:
        label = "dry-run" if cfg.dry_run else (cfg.model or "model").replace("/", "_")
        out_path = (
            Path("runs") / f"toolwoz-{cfg.split}-{cfg.agent}-{label}-{time.strftime('%Y%m%d-%H%M%S')}.jsonl"
        )
    check_writable(out_path)
    total = len(task_ids) * cfg.trials
    endpoints = open_endpoints(cfg, env)
    if cfg.dry_run:
        where = "in-process" if endpoints.mock is None else f"served at {endpoints.mock.base_url}"
        err.print(
            f"[bold yellow]DRY RUN[/bold yellow]: agent and customer are josh's [bold]scripted "
            f"{'policies' if endpoints.mock is None else 'mock endpoint'}[/bold], {where} (an oracle and a "
            "script, not language models). Point at a real model with --model NAME [--base-url URL] (key from "
            "$OPENAI_API_KEY).",
            soft_wrap=True,
        )

    def open_writer() -> tuple[RunWriter, RunContents | None]:
        previous = read_run(out_path) if resume and out_path.exists() and out_path.stat().st_size else None
        writer = open_run(
            out_path, config=config_for_file(cfg), config_hash=cfg.config_hash(), seed=cfg.seed,
            resume=resume, command="eval toolwoz",
        )  # fmt: skip
        write_config(out_path, cfg, endpoints)
        customer = (
            "replayed" if cfg.user == "replay"
            else "scripted" if cfg.customer_model == SCRIPTED
            else f"{cfg.customer_model} at {cfg.user_base_url or 'OpenAI'}"
        )  # fmt: skip
        errored = len(writer.errored)
        already = f"{len(writer.done):,} already done" + (
            f" ({errored:,} of them ended in an error: "
            + ("running them again" if retry_errors else "--retry-errors runs them again") + ")"
            if errored else ""
        )  # fmt: skip
        err.print(
            f"{total:,} conversations ({len(task_ids):,} tasks x {cfg.trials} trials), {already}; "
            f"agent {cfg.agent}, user {cfg.user} ({customer}), prompts {cfg.prompts}, "
            f"{'strict' if cfg.strict_errors else 'lenient'} errors -> {out_path}",
            soft_wrap=True,
        )
        return writer, previous

    outcome = asyncio.run(_run(cfg, env, endpoints, open_writer, total, retry_errors))
    contents = read_run(out_path)
    records = latest_by_key(contents.records)
    write_config(out_path, cfg, endpoints)  # now with what the run learnt of its endpoints
    summary = summarize(records, wall_s=contents.previous_wall_s)
    sidecar(out_path, "summary").write_text(json.dumps(summary, indent=2) + "\n")
    if records:
        print_summary(out, summary, f"ToolWOZ {cfg.split}: {cfg.model or 'scripted mock (dry run)'}")
    else:
        err.print("no conversation finished: nothing to summarise")
    err.print(f"run file {out_path}; summary {sidecar(out_path, 'summary')}", soft_wrap=True)
    again = f"the same command plus --resume --out {out_path}"
    if outcome.status == "cancelled":
        err.print(f"interrupted: continue with {again}", soft_wrap=True)
        raise typer.Exit(EXIT_INTERRUPTED)
    if outcome.stopped is not None:
        err.print(
            f"[bold red]stopped:[/bold red] {escape(outcome.stopped)}; the conversations not finished were not "
            f"recorded: continue with {again}",
            soft_wrap=True,
        )
        raise typer.Exit(EXIT_ENDPOINT_DOWN)
    errors = sum(r.get("status") != "success" for r in records)
    if errors:
        err.print(
            f"{errors:,} of {len(records):,} conversations ended in an error (counted as reward 0); run them "
            f"again with {again} --retry-errors",
            soft_wrap=True,
        )
        raise typer.Exit(EXIT_CONVERSATION_ERRORS)


EXIT_CONVERSATION_ERRORS = 3
EXIT_ENDPOINT_DOWN = 4
EXIT_INTERRUPTED = 130


def write_config(out_path: Path, cfg: ToolWOZEvalConfig, endpoints: Endpoints) -> None:
    """RUN.config.json: the resolved options (in the flag vocabulary) and what josh adapted to the endpoints."""
    data = config_for_file(cfg)
    adaptations = endpoints.adaptations()
    if adaptations:
        data[ADAPTATIONS_KEY] = adaptations
    sidecar(out_path, "config").write_text(json.dumps(data, indent=2) + "\n")


@dataclass
class RunOutcome:
    status: str  # the run file's final status: success, error or cancelled
    stopped: str | None = None  # why the run stopped before its end (the endpoint went down or is unusable)


async def _run(
    cfg: ToolWOZEvalConfig,
    env: ToolWOZEnvironment,
    endpoints: Endpoints,
    open_writer: Callable[[], tuple[RunWriter, RunContents | None]],
    total: int,
    retry_errors: bool = False,
) -> RunOutcome:
    """Preflight the endpoints (before any file is written; skipped when a response cache may answer
    everything), then run. Ctrl-C and SIGTERM stop it the same way: finished conversations are kept."""
    main = asyncio.current_task()
    loop = asyncio.get_running_loop()
    assert main is not None
    with contextlib.suppress(NotImplementedError, RuntimeError):  # no signal handlers off the main thread
        loop.add_signal_handler(signal.SIGTERM, main.cancel)
    try:
        if cfg.cache_dir is None:
            await preflight(endpoints)
        writer, previous = open_writer()
    except BaseException:
        await endpoints.aclose()
        raise
    started = time.perf_counter()
    totals = LiveTotals(previous.records if previous else ())
    outcome = RunOutcome("error")
    with Progress(
        BarColumn(bar_width=12), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("{task.description}"),
        console=err, transient=False,
    ) as progress:  # fmt: skip
        remaining = len(pending_jobs(env, cfg, writer, retry_errors=retry_errors))
        bar = progress.add_task(totals.line(), total=total, completed=total - remaining)

        def on_record(record: dict[str, Any]) -> None:
            totals.add(record)
            progress.update(bar, advance=1, description=totals.line())

        try:
            await evaluate(cfg, env, endpoints, writer, on_record=on_record, retry_errors=retry_errors)
            outcome = RunOutcome("error" if totals.errors else "success")
        except asyncio.CancelledError:
            outcome = RunOutcome("cancelled")
        except EndpointError as exc:
            outcome = RunOutcome("error", stopped=str(exc))
        finally:
            wall = time.perf_counter() - started
            writer.close(outcome.status, wall_s=round(wall, 3), errors=totals.errors, stopped=outcome.stopped)
            await endpoints.aclose()
    return outcome


# What `josh report A B` shows of each run; differences other than the model are warned about.
SETTINGS = ("model", "base-url", "agent", "user", "user-model", "prompts", "strict-errors", "split", "trials",
            "max-turns", "temperature")  # fmt: skip


def run_settings(header: dict[str, Any]) -> dict[str, Any]:
    """The settings of a run from its header (run files written before the flat vocabulary too)."""
    config = header.get("config") or {}
    if isinstance(config.get("agent"), dict):  # format 1: nested sections
        agent, user = config["agent"], config.get("user") or {}
        config = {"model": agent.get("model"), "base-url": agent.get("base_url"), "agent": agent.get("strategy"),
                  "user": user.get("mode"), "user-model": user.get("model"), "split": config.get("split"),
                  "trials": config.get("trials"), "max-turns": config.get("max_turns"),
                  "temperature": agent.get("temperature"), "strict-errors": agent.get("strict_errors")}  # fmt: skip
    return {key: config.get(key, "n/a") for key in SETTINGS}


@user_errors
def report_cmd(
    run: Annotated[Path, typer.Argument(help="A run file (JSONL) written by josh eval.")],
    other: Annotated[Path | None, typer.Argument(help="A second run file to compare with the first.")] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the summary (or the comparison) as JSON instead of tables.")
    ] = False,
) -> None:
    """Summarise a run, or compare two: each run's settings, metrics side by side, and a paired
    permutation test with a bootstrap interval over the tasks both ran."""
    first = read_run(run)
    summary = summarize(first.records)
    if other is None:
        if json_out:
            out.print_json(json.dumps(summary))
        elif not first.records:
            err.print(f"{run} holds no finished conversation yet", soft_wrap=True)
        else:
            title = f"{run}  ({first.header.get('command', '')}, config {first.header.get('config_hash')})"
            print_summary(out, summary, title)
        return
    second = read_run(other)
    summary2 = summarize(second.records)
    paired = compare_runs(first.records, second.records)
    settings = [run_settings(first.header), run_settings(second.header)]
    differing = [k for k in SETTINGS if k not in ("model", "base-url") and settings[0][k] != settings[1][k]]
    if json_out:
        payload = {
            "a": summary,
            "b": summary2,
            "paired": paired,
            "settings": settings,
            "differing": differing,
        }
        out.print_json(json.dumps(payload))
        return
    out.print(settings_table(settings, (run.name, other.name), differing))
    if differing:
        err.print(
            f"[yellow]warning:[/yellow] the runs differ in {', '.join(differing)}: the comparison mixes more "
            "than the model",
            soft_wrap=True,
        )
    print_comparison(out, summary, summary2, (run.name, other.name), paired)


@user_errors
@with_options(ServeMockOptions)
def serve_mock(*, options: dict[str, Any]) -> None:
    """Serve josh's SCRIPTED mock endpoint (OpenAI-compatible, 127.0.0.1 only) until Ctrl-C.

    It plays agent and customer on ToolWOZ tasks with scripted policies (an oracle agent that makes the goal
    calls, with --mock-mistake-rate; a customer that reveals the goal) and can inject faults. It is not a
    language model: use it to dry-run pipelines, e.g. `josh eval toolwoz --base-url URL`.
    """
    settings = resolve(ServeMockOptions, options)
    env = ToolWOZEnvironment.load(report)
    try:
        server = MockServer(env, mock_config(settings), port=settings.port, quiet_resets=False)
    except OSError as exc:
        raise JoshError(
            f"cannot listen on 127.0.0.1:{settings.port}: {exc.strerror}; choose another --port"
        ) from None
    err.print(
        f"josh mock endpoint ([bold yellow]SCRIPTED[/bold yellow], not a language model) on {server.base_url} "
        f"(models josh-mock-agent, josh-mock-user); Ctrl-C stops it",
        soft_wrap=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        err.print("stopped")
    finally:
        server._server.server_close()
