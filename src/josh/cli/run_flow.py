"""What every command that runs conversations shares, from resolved options to exit status.

`josh eval NAME` and `josh harvest NAME` differ in their benchmark (`josh.benchmarks.benchmark`), their
config and the work done per task; the rest is here, once, for every benchmark: finding the endpoint's model, checking keys and the run file before any work, the dry-run
banner, the locked append-only run file and its resume line, the preflight, the progress line over the whole
run file, Ctrl-C and SIGTERM, endpoint outages, the summary files, and the exit status.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import BaseModel
from rich.markup import escape

from josh.benchmarks.benchmark import Benchmark, RunWork
from josh.benchmarks.context_check import check_context
from josh.benchmarks.endpoints import Endpoints, check_keys, discover_models, preflight
from josh.benchmarks.jobs import left_out_tasks, pending_jobs, select_tasks
from josh.benchmarks.ray_jobs import OnError, run_on_ray
from josh.benchmarks.run_options import SCRIPTED, RunOptions
from josh.cli.console import counted, err, out, report
from josh.cli.live import LiveTotals, live_progress
from josh.cli.options import ADAPTATIONS_KEY, config_for_file, resolve, with_options
from josh.cli.render import print_summary
from josh.errors import JoshError
from josh.llm import event_loop
from josh.llm.base import EndpointError, is_context_overflow
from josh.llm.hf.spec import is_hf_spec
from josh.runner import RunContents, RunWriter, open_run, read_run, summarize
from josh.runner.ray_cluster import check_address, import_ray, ray_cluster
from josh.runner.runfile import check_writable
from josh.runner.summary import latest_by_key

C = TypeVar("C", bound=RunOptions)
F = TypeVar("F", bound=Callable[..., Any])

EXIT_CONVERSATION_ERRORS = 3
EXIT_ENDPOINT_DOWN = 4
EXIT_INTERRUPTED = 130

OnRecord = Callable[[dict[str, Any]], None]
Work = Callable[[Any, Endpoints, RunWriter, Callable[[dict[str, Any]], None]], Awaitable[int]]
"""The command's own part: run every pending (task, trial), writing each record and reporting it."""


def benchmark_work(loop: RunWork, benchmark: Benchmark, cfg: RunOptions, on_error: OnError, retry_errors: bool) -> Work:
    """The `Work` of `josh eval NAME` or `josh harvest NAME`: the benchmark's `loop` (`evaluate` or `harvest`)
    in this process, or its jobs as Ray tasks with `--ray` (`on_error` records a job whose task failed)."""

    def work(env: Any, endpoints: Endpoints, writer: RunWriter, on_record: OnRecord) -> Awaitable[int]:
        if cfg.ray:
            return run_on_ray(
                loop, benchmark, cfg, env, endpoints, writer, on_record=on_record, on_error=on_error,
                retry_errors=retry_errors,
            )  # fmt: skip
        return loop(cfg, env, endpoints, writer, on_record=on_record, retry_errors=retry_errors)

    return work


def _option(name: str, annotation: Any, default: Any) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


# The run-file options of every command that runs conversations, declared once.
RUN_FILE_OPTIONS = (
    _option("config_file", Annotated[Path | None, typer.Option(
        "--config", help="YAML (or JSON) file of options, keys as the flag names (max-tokens: 256); flags "
        "typed here override it. A run's RUN.config.json can be fed back.",
    )], None),
    _option("out_path", Annotated[Path | None, typer.Option(
        "--out", help="Run file (JSONL), appended to as each task finishes \\[default: "
        "runs/<command>-<split>-<agent>-<model>-<time>.jsonl].", show_default=False,
    )], None),
    _option("resume", Annotated[bool, typer.Option(
        "--resume", help="Continue --out where it stopped, skipping what is finished.",
    )], False),
    _option("retry_errors", Annotated[bool, typer.Option(
        "--retry-errors", help="With --resume: run again what ended in an error.",
    )], False),
)  # fmt: skip


def run_command(config_class: type[BaseModel]) -> Callable[[F], F]:
    """A command with one option per field of `config_class` and the run-file options."""
    return with_options(config_class, RUN_FILE_OPTIONS)


def sidecar(path: Path, kind: str) -> Path:
    """RUN.jsonl -> RUN.summary.json / RUN.config.json."""
    stem = path.name[: -len(".jsonl")] if path.name.endswith(".jsonl") else path.name
    return path.with_name(f"{stem}.{kind}.json")


def resolve_run(
    config_class: type[C],
    options: dict[str, Any],
    config_file: Path | None,
    *,
    resume: bool,
    retry_errors: bool,
) -> C:
    """The run's options, with the endpoint's only model filled in where a base URL came without one;
    bad options, missing keys and a lone --retry-errors fail here, before any work."""
    if retry_errors and not resume:
        raise JoshError("--retry-errors only applies with --resume (it re-runs errors recorded in --out)")
    cfg = resolve(config_class, options, config_file)
    found = asyncio.run(discover_models(cfg))
    if found:
        report(
            "using the endpoint's only model: "
            + ", ".join(f"--{k.replace('_', '-')} {v}" for k, v in found.items())
        )
        cfg = resolve(config_class, {**options, **found}, config_file)
    check_keys(cfg)
    return cfg


@dataclass
class RunOutcome:
    status: str  # the run file's final status: success, error or cancelled
    stopped: str | None = None  # why the run stopped before its end (the endpoint went down or is unusable)


@dataclass
class RunJob:
    """One command's run: its options, its run file and what it does per task."""

    command: str  # e.g. "eval toolwoz": recorded in the run file's header and lock
    kind: str  # "conversations" or "trees", for the screen
    cfg: RunOptions
    out_path: Path | None
    resume: bool
    retry_errors: bool
    work: Work
    out_prefix: str  # of the default run file name
    benchmark: Benchmark  # its environment, checks and models

    def default_out(self) -> Path:
        """runs/<prefix>-<split>-<agent>-<model>-<time>.jsonl"""
        label = "dry-run" if self.cfg.dry_run else model_label(self.cfg.model or "model")
        stamp = time.strftime("%Y%m%d-%H%M%S")
        return Path("runs") / f"{self.out_prefix}-{self.cfg.split}-{self.cfg.agent}-{label}-{stamp}.jsonl"


def model_label(model: str) -> str:
    """A model's name for a file name: `hf:/m/qwen+/runs/lora` -> `hf-qwen+lora`, `org/name` -> `org_name`."""
    if is_hf_spec(model):
        base, _, adapter = model[len("hf:") :].rstrip("/").rpartition("+")
        parts = [Path(base).name, Path(adapter).name] if base else [Path(adapter).name]
        return "hf-" + "+".join(part for part in parts if part)
    return model.replace("/", "_")


def _by_reason(left_out: dict[str, str]) -> dict[str, list[str]]:
    grouped: dict[str, list[str]] = {}
    for task_id, reason in left_out.items():
        grouped.setdefault(reason, []).append(task_id)
    return grouped


def execute(job: RunJob) -> None:
    """Run `job` to its end, print and save its summary, and exit with the run's status (see the commands'
    --help: 0 all scored, 3 some ended in an error, 4 the endpoint stopped the run, 130 interrupted)."""
    cfg = job.cfg
    if cfg.ray:
        import_ray()  # without Ray installed: one line, before any work
        check_address(cfg.ray)  # and an address nothing listens on
    env = job.benchmark.load(report)
    job.benchmark.check(cfg)
    task_ids = select_tasks(env, cfg)
    for reason, ids in _by_reason(left_out_tasks(env, cfg)).items():
        shown = ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")
        report(f"{len(ids)} task(s) of split {cfg.split} left out: {reason} ({shown})")
    out_path = job.out_path or job.default_out()
    check_writable(out_path)
    total = len(task_ids) * cfg.trials
    if is_hf_spec(cfg.model) or is_hf_spec(cfg.customer_model):
        report("loading the hf: model(s) in-process")
    endpoints = job.benchmark.open_endpoints(cfg, env)
    for line in endpoints.in_process():
        report(line)
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
        writer = open_run(
            out_path, config=config_for_file(cfg), config_hash=cfg.config_hash(), seed=cfg.seed,
            resume=job.resume, command=job.command,
        )  # fmt: skip
        write_config(out_path, cfg, endpoints)
        customer = (
            "replayed" if cfg.user == "replay"
            else "scripted" if cfg.customer_model == SCRIPTED
            else f"{cfg.customer_model} in-process" if is_hf_spec(cfg.customer_model)
            else f"{cfg.customer_model} at {' + '.join(cfg.user_base_url or ['OpenAI'])}"
        )  # fmt: skip
        errored = len(writer.errored)
        again = "running them again" if job.retry_errors else "--retry-errors runs them again"
        already = f"{len(writer.done):,} already done" + (
            f" ({errored:,} of them ended in an error: {again})" if errored else ""
        )
        err.print(
            f"{counted(total, job.kind[:-1])} ({counted(len(task_ids), 'task')} x {counted(cfg.trials, 'trial')}), "
            f"{already}; "
            f"agent {cfg.agent}, user {cfg.user} ({customer}), prompts {cfg.prompts}, "
            f"{'strict' if cfg.strict_errors else 'lenient'} errors -> {out_path}",
            soft_wrap=True,
        )
        return writer, writer.previous  # what the file held, read under its lock

    first_task = task_ids[0] if task_ids and not cfg.dry_run and cfg.model != SCRIPTED else None
    with ray_cluster(cfg.ray, report) if cfg.ray else contextlib.nullcontext():
        outcome = event_loop.run(_run(job, env, endpoints, open_writer, total, first_task))
    contents = read_run(out_path, resuming=True)  # a run's damaged lines run again on --resume
    records = latest_by_key(contents.records)
    write_config(out_path, cfg, endpoints)  # now with what the run learnt of its endpoints
    summary = summarize(records, wall_s=contents.previous_wall_s)
    per_endpoint = endpoints.calls_per_endpoint()
    if per_endpoint:
        summary["calls_per_endpoint"] = per_endpoint
    sidecar(out_path, "summary").write_text(json.dumps(summary, indent=2) + "\n")
    if records:
        print_summary(
            out,
            summary,
            f"{job.benchmark.name} {cfg.split} ({job.command}): {cfg.model or 'scripted mock (dry run)'}",
        )
    else:
        err.print(f"no {job.kind[:-1]} finished: nothing to summarise")
    for role, calls in per_endpoint.items():
        shown = ", ".join(f"{url} {count:,}" for url, count in calls.items())
        err.print(f"{role} calls per endpoint (this session): {shown}", soft_wrap=True)
    err.print(f"run file {out_path}; summary {sidecar(out_path, 'summary')}", soft_wrap=True)
    again = f"the same command plus --resume --out {out_path}"
    if outcome.status == "cancelled":
        err.print(f"interrupted: continue with {again}", soft_wrap=True)
        raise typer.Exit(EXIT_INTERRUPTED)
    if outcome.stopped is not None:
        err.print(
            f"[bold red]stopped:[/bold red] {escape(outcome.stopped)}; the {job.kind} not finished were not "
            f"recorded: continue with {again}",
            soft_wrap=True,
        )
        raise typer.Exit(EXIT_ENDPOINT_DOWN)
    failed = [r for r in records if r.get("status") != "success"]
    if failed:
        err.print(errors_line(failed, len(records), job.kind, again), soft_wrap=True)
        raise typer.Exit(EXIT_CONVERSATION_ERRORS)


def errors_line(failed: list[dict[str, Any]], total: int, kind: str, again: str) -> str:
    """The closing line of a run with errors: how many, and what would help. Running them again helps a
    passing failure; a context overflow would repeat as it is, so for those it names the fix first."""
    overflow = sum(is_context_overflow(r.get("error")) for r in failed)
    head = f"{len(failed):,} of {total:,} {kind} ended in an error (counted as reward 0)"
    retry = f"{again} --retry-errors"
    if not overflow:
        return f"{head}; run them again with {retry}"
    fix = (
        "give the server a larger context (llama.cpp: -c / --ctx-size, per slot; vLLM: --max-model-len) or "
        "use a model with a longer one"
    )
    if overflow == len(failed):
        return (
            f"{head}: they outgrew the model's context window, and running them as they are would repeat "
            f"that: {fix}; then {retry} runs them again"
        )
    return (
        f"{head}: {overflow:,} outgrew the model's context window (running them as they are would repeat "
        f"that: {fix}); run them again with {retry}"
    )


def detach_from_closed_pipe() -> None:
    """Whoever read josh's output has gone (a pipe closed): what is left of stdout and stderr goes nowhere,
    so that stopping the run cleanly (its status line, its summary file) does not fail on them."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            os.dup2(devnull, stream.fileno())
    os.close(devnull)
    err.quiet = out.quiet = True


def write_config(out_path: Path, cfg: RunOptions, endpoints: Endpoints) -> None:
    """RUN.config.json: the resolved options (in the flag vocabulary) and what josh adapted to the endpoints."""
    data = config_for_file(cfg)
    adaptations = endpoints.adaptations()
    if adaptations:
        data[ADAPTATIONS_KEY] = adaptations
    sidecar(out_path, "config").write_text(json.dumps(data, indent=2) + "\n")


async def _run(
    job: RunJob,
    env: Any,
    endpoints: Endpoints,
    open_writer: Callable[[], tuple[RunWriter, RunContents | None]],
    total: int,
    first_task: str | None,
) -> RunOutcome:
    """Preflight the endpoints and check that `first_task`'s first prompts fit their context (before any
    file is written; skipped when a response cache may answer everything, or without a task), then run.
    Ctrl-C and SIGTERM stop it the same way: finished work is kept."""
    main = asyncio.current_task()
    loop = asyncio.get_running_loop()
    assert main is not None
    with contextlib.suppress(NotImplementedError, RuntimeError):  # no signal handlers off the main thread
        loop.add_signal_handler(signal.SIGTERM, main.cancel)
    try:
        if job.cfg.cache_dir is None:
            await preflight(endpoints)
            if first_task is not None:
                await check_context(job.benchmark.setups(job.cfg, env), endpoints, first_task)
        writer, previous = open_writer()
    except BaseException:
        await endpoints.aclose()
        raise
    started = time.perf_counter()
    totals = LiveTotals(previous.records if previous else ())
    outcome = RunOutcome("error")
    remaining = len(pending_jobs(env, job.cfg, writer, retry_errors=job.retry_errors))
    with live_progress(err, job.command, job.kind, total, total - remaining, totals) as advance:

        def on_record(record: dict[str, Any]) -> None:
            totals.add(record)
            try:
                advance()
            except (BrokenPipeError, SystemExit):  # the reader went away (`josh eval ... | head`; Rich turns
                detach_from_closed_pipe()  # a broken pipe into SystemExit): stop as Ctrl-C does
                main.cancel()

        try:
            await job.work(env, endpoints, writer, on_record)
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
