"""`josh eval toolwoz`, `josh report` and `josh serve-mock`."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from pydantic import ValidationError
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from josh.benchmarks.toolwoz import Endpoints, evaluate, open_endpoints, pending_jobs, preflight, select_tasks
from josh.benchmarks.toolwoz_config import AgentConfig, MockSettings, ToolWOZEvalConfig, UserConfig
from josh.cli.console import err, out, report, user_errors
from josh.cli.render import print_comparison, print_summary
from josh.envs.toolwoz import ToolWOZEnvironment
from josh.errors import JoshError
from josh.mock import MockConfig, MockServer
from josh.runner import RunWriter, open_run, read_run, summarize
from josh.runner.summary import latest_by_key

eval_app = typer.Typer(help="Evaluate an agent on a benchmark.", no_args_is_help=True)


def _doc(model: type, field: str) -> str:
    return model.model_fields[field].description or ""


def _set(tree: dict[str, Any], path: str, value: Any) -> None:
    if value is None:
        return
    node = tree
    *parents, leaf = path.split(".")
    for key in parents:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[leaf] = value


def sidecar(path: Path, kind: str) -> Path:
    """RUN.jsonl -> RUN.summary.json / RUN.config.json."""
    stem = path.name[: -len(".jsonl")] if path.name.endswith(".jsonl") else path.name
    return path.with_name(f"{stem}.{kind}.json")


def _load_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise JoshError(f"cannot read the config file {path}: {exc}") from None
    if not isinstance(data, dict):
        raise JoshError(f"{path} must hold a mapping of options")
    return data


@eval_app.command("toolwoz")
@user_errors
def eval_toolwoz(
    model: Annotated[str | None, typer.Option(help=_doc(AgentConfig, "model"))] = None,
    base_url: Annotated[str | None, typer.Option(help=_doc(AgentConfig, "base_url"))] = None,
    api_key_env: Annotated[str | None, typer.Option(help=_doc(AgentConfig, "api_key_env"))] = None,
    agent: Annotated[str | None, typer.Option(help=_doc(AgentConfig, "strategy") + " [react|fc]")] = None,
    temperature: Annotated[float | None, typer.Option(help=_doc(AgentConfig, "temperature"))] = None,
    user: Annotated[str | None, typer.Option(help=_doc(UserConfig, "mode") + " [goal|guide|replay]")] = None,
    user_model: Annotated[str | None, typer.Option(help=_doc(UserConfig, "model"))] = None,
    user_base_url: Annotated[str | None, typer.Option(help=_doc(UserConfig, "base_url"))] = None,
    user_api_key_env: Annotated[str | None, typer.Option(help=_doc(UserConfig, "api_key_env"))] = None,
    user_temperature: Annotated[float | None, typer.Option(help=_doc(UserConfig, "temperature"))] = None,
    split: Annotated[str | None, typer.Option(help=_doc(ToolWOZEvalConfig, "split"))] = None,
    task: Annotated[
        list[str] | None, typer.Option(help=_doc(ToolWOZEvalConfig, "task_ids") + " Repeatable.")
    ] = None,
    limit: Annotated[int | None, typer.Option(help=_doc(ToolWOZEvalConfig, "limit"))] = None,
    trials: Annotated[int | None, typer.Option(help=_doc(ToolWOZEvalConfig, "trials"))] = None,
    max_turns: Annotated[int | None, typer.Option(help=_doc(ToolWOZEvalConfig, "max_turns"))] = None,
    seed: Annotated[int | None, typer.Option(help=_doc(ToolWOZEvalConfig, "seed"))] = None,
    concurrency: Annotated[int | None, typer.Option(help=_doc(ToolWOZEvalConfig, "concurrency"))] = None,
    timeout: Annotated[float | None, typer.Option(help=_doc(ToolWOZEvalConfig, "timeout_s"))] = None,
    max_retries: Annotated[int | None, typer.Option(help=_doc(ToolWOZEvalConfig, "max_retries"))] = None,
    cache_dir: Annotated[str | None, typer.Option(help=_doc(ToolWOZEvalConfig, "cache_dir"))] = None,
    mock_mistake_rate: Annotated[float | None, typer.Option(help=_doc(MockSettings, "mistake_rate"))] = None,
    mock_error_rate: Annotated[float | None, typer.Option(help=_doc(MockSettings, "error_rate"))] = None,
    mock_hang_rate: Annotated[float | None, typer.Option(help=_doc(MockSettings, "hang_rate"))] = None,
    mock_malformed_rate: Annotated[
        float | None, typer.Option(help=_doc(MockSettings, "malformed_rate"))
    ] = None,
    mock_empty_rate: Annotated[float | None, typer.Option(help=_doc(MockSettings, "empty_rate"))] = None,
    mock_latency: Annotated[float | None, typer.Option(help=_doc(MockSettings, "latency_s"))] = None,
    config: Annotated[
        Path | None, typer.Option(help="YAML file of options; flags given here override it.")
    ] = None,
    out_path: Annotated[
        Path | None, typer.Option("--out", help="Run file (JSONL). Default: runs/<...>.jsonl")
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue --out, skipping finished tasks.")
    ] = False,
    retry_errors: Annotated[
        bool,
        typer.Option("--retry-errors", help="With --resume: run again the tasks that ended in an error."),
    ] = False,
    strict_errors: Annotated[
        bool | None, typer.Option("--strict-errors", help=_doc(AgentConfig, "strict_errors"))
    ] = None,
) -> None:
    """Benchmark a tool-calling agent on ToolWOZ with a simulated customer.

    With no --model this is a DRY RUN against josh's scripted mock endpoint (an oracle agent and a scripted
    customer, not language models), started in-process: it exercises the whole pipeline for real. Point it
    at any OpenAI-compatible endpoint with --model NAME [--base-url URL]; the key comes from $OPENAI_API_KEY
    or --api-key-env. Results are appended to --out as each conversation finishes; --resume continues a
    killed run; RUN.summary.json and RUN.config.json are written beside it.
    """
    tree: dict[str, Any] = _load_yaml(config) if config else {}
    for path, value in [
        ("agent.model", model), ("agent.base_url", base_url), ("agent.api_key_env", api_key_env),
        ("agent.strategy", agent), ("agent.temperature", temperature), ("agent.strict_errors", strict_errors), ("user.mode", user),
        ("user.model", user_model), ("user.base_url", user_base_url), ("user.api_key_env", user_api_key_env),
        ("user.temperature", user_temperature), ("split", split), ("task_ids", task or None), ("limit", limit),
        ("trials", trials), ("max_turns", max_turns), ("seed", seed), ("concurrency", concurrency),
        ("timeout_s", timeout), ("max_retries", max_retries), ("cache_dir", cache_dir),
        ("mock.mistake_rate", mock_mistake_rate), ("mock.error_rate", mock_error_rate),
        ("mock.hang_rate", mock_hang_rate), ("mock.malformed_rate", mock_malformed_rate),
        ("mock.empty_rate", mock_empty_rate), ("mock.latency_s", mock_latency),
    ]:  # fmt: skip
        _set(tree, path, value)
    try:
        cfg = ToolWOZEvalConfig.model_validate(tree)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise JoshError(f"invalid options: {problems}") from None
    if cfg.mock is not None and not cfg.dry_run:
        raise JoshError("--mock-* options only apply to a dry run (no --model, or --model scripted)")

    env = ToolWOZEnvironment.load(report)
    task_ids = select_tasks(env, cfg)
    if out_path is None:
        label = "dry-run" if cfg.dry_run else (cfg.agent.model or "model").replace("/", "_")
        out_path = (
            Path("runs")
            / f"toolwoz-{cfg.split}-{cfg.agent.strategy}-{label}-{time.strftime('%Y%m%d-%H%M%S')}.jsonl"
        )
    total = len(task_ids) * cfg.trials
    endpoints = open_endpoints(cfg, env)
    if cfg.agent.model == "scripted":
        err.print(
            "[bold yellow]DRY RUN[/bold yellow]: agent and customer are josh's [bold]scripted policies[/bold], "
            "in-process (an oracle and a script, not language models). "
            "Point at a real model with --model NAME [--base-url URL] (key from $OPENAI_API_KEY).",
            soft_wrap=True,
        )
    if endpoints.mock is not None:
        err.print(
            f"[bold yellow]DRY RUN[/bold yellow]: agent and customer are josh's [bold]scripted mock endpoint[/bold] "
            f"at {endpoints.mock.base_url} (an oracle and a script, not language models). "
            "Point at a real model with --model NAME [--base-url URL] (key from $OPENAI_API_KEY).",
            soft_wrap=True,
        )

    def open_writer() -> RunWriter:
        writer = open_run(
            out_path, config=cfg.model_dump(mode="json"), config_hash=cfg.config_hash(), seed=cfg.seed,
            resume=resume, command="eval toolwoz",
        )  # fmt: skip
        sidecar(out_path, "config").write_text(json.dumps(cfg.model_dump(mode="json"), indent=2) + "\n")
        customer = (
            "replayed" if cfg.user.mode == "replay"
            else "scripted" if cfg.dry_run
            else f"{cfg.user.model} at {cfg.user.base_url or 'OpenAI'}"
        )  # fmt: skip
        err.print(
            f"{total:,} conversations ({len(task_ids):,} tasks x {cfg.trials} trials), {len(writer.done):,} already "
            f"done; agent {cfg.agent.strategy}, user {cfg.user.mode} ({customer}) -> {out_path}",
            soft_wrap=True,
        )
        return writer

    started = time.perf_counter()
    try:
        status = asyncio.run(_run(cfg, env, endpoints, open_writer, total, retry_errors))
    except KeyboardInterrupt:
        status = "cancelled"  # the run file already says so; finished conversations are kept
    if not out_path.exists():
        return
    records = latest_by_key(read_run(out_path).records)
    summary = summarize(records, wall_s=time.perf_counter() - started)
    sidecar(out_path, "summary").write_text(json.dumps(summary, indent=2) + "\n")
    print_summary(out, summary, f"ToolWOZ {cfg.split}: {cfg.agent.model or 'scripted mock (dry run)'}")
    err.print(f"run file {out_path}; summary {sidecar(out_path, 'summary')}", soft_wrap=True)
    if status == "cancelled":
        err.print(
            f"interrupted: continue with the same command plus --resume --out {out_path}", soft_wrap=True
        )
        raise typer.Exit(130)


async def _run(
    cfg: ToolWOZEvalConfig,
    env: ToolWOZEnvironment,
    endpoints: Endpoints,
    open_writer: Callable[[], RunWriter],
    total: int,
    retry_errors: bool = False,
) -> str:
    """Preflight the endpoints (before any file is written), then run; returns the run's final status."""
    try:
        await preflight(endpoints)
        writer = open_writer()
    except BaseException:
        await endpoints.aclose()
        raise
    stats = {"reward": 0.0, "scored": 0, "perfect": 0, "errors": 0, "tokens": 0, "cost": 0.0}

    def line() -> str:
        avg = stats["reward"] / stats["scored"] if stats["scored"] else 0.0
        rate = stats["perfect"] / stats["scored"] if stats["scored"] else 0.0
        return (
            f"reward {avg:.3f} · 100% {rate:.3f} · err {stats['errors']} · "
            f"{stats['tokens'] / 1000:.0f}k tok · ${stats['cost']:.2f}"
        )

    with Progress(
        BarColumn(bar_width=12), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("{task.description}"),
        console=err, transient=False,
    ) as progress:  # fmt: skip
        remaining = len(pending_jobs(env, cfg, writer, retry_errors=retry_errors))
        bar = progress.add_task(line(), total=total, completed=total - remaining)

        def on_record(record: dict[str, Any]) -> None:
            if record.get("status") == "success":
                stats["scored"] += 1
                stats["reward"] += record["reward"]
                stats["perfect"] += record["reward"] == 1.0
            else:
                stats["errors"] += 1
            for role in ("agent", "user"):
                usage = record.get(f"{role}_usage") or {}
                stats["tokens"] += usage.get("prompt_tokens", 0) + usage.get("completion_tokens", 0)
                stats["cost"] += usage.get("cost") or 0.0  # unpriced (None) adds nothing here
            progress.update(bar, advance=1, description=line())

        status = "error"
        try:
            await evaluate(cfg, env, endpoints, writer, on_record=on_record, retry_errors=retry_errors)
            status = "success"
        except (KeyboardInterrupt, asyncio.CancelledError):
            status = "cancelled"
        finally:
            writer.close(status)
            await endpoints.aclose()
    return status


@user_errors
def report_cmd(
    run: Annotated[Path, typer.Argument(help="A run file (JSONL) written by josh eval.")],
    other: Annotated[Path | None, typer.Argument(help="A second run file to compare with the first.")] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the summary as JSON instead of tables.")
    ] = False,
) -> None:
    """Summarise a run, or compare two runs side by side."""
    first = read_run(run)
    summary = summarize(first.records)
    if other is None:
        if json_out:
            out.print_json(json.dumps(summary))
        else:
            print_summary(
                out,
                summary,
                f"{run}  ({first.header.get('command', '')}, config {first.header.get('config_hash')})",
            )
        return
    second = read_run(other)
    summary2 = summarize(second.records)
    a = {k: r for k, r in first.keyed().items() if r.get("status") == "success"}
    b = {k: r for k, r in second.keyed().items() if r.get("status") == "success"}
    common = set(a) & set(b)
    paired = {
        "common": len(common),
        "better": sum(b[k]["reward"] > a[k]["reward"] for k in common),
        "worse": sum(b[k]["reward"] < a[k]["reward"] for k in common),
        "equal": sum(b[k]["reward"] == a[k]["reward"] for k in common),
    }
    if json_out:
        out.print_json(json.dumps({"a": summary, "b": summary2, "paired": paired}))
        return
    print_comparison(out, summary, summary2, (run.name, other.name), paired)


@user_errors
def serve_mock(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1 (0 picks a free one).")] = 8765,
    mistake_rate: Annotated[float, typer.Option(help=_doc(MockSettings, "mistake_rate"))] = 0.0,
    latency: Annotated[float, typer.Option(help=_doc(MockSettings, "latency_s"))] = 0.0,
    error_rate: Annotated[float, typer.Option(help=_doc(MockSettings, "error_rate"))] = 0.0,
    hang_rate: Annotated[float, typer.Option(help=_doc(MockSettings, "hang_rate"))] = 0.0,
    hang_seconds: Annotated[float, typer.Option(help="How long a hung response is held.")] = 30.0,
    malformed_rate: Annotated[float, typer.Option(help=_doc(MockSettings, "malformed_rate"))] = 0.0,
    empty_rate: Annotated[float, typer.Option(help=_doc(MockSettings, "empty_rate"))] = 0.0,
    seed: Annotated[int, typer.Option(help=_doc(MockSettings, "seed"))] = 0,
) -> None:
    """Serve josh's SCRIPTED mock endpoint (OpenAI-compatible, 127.0.0.1 only) until Ctrl-C.

    It plays agent and customer on ToolWOZ tasks with scripted policies (an oracle agent that makes the goal
    calls, with --mistake-rate; a customer that reveals the goal) and can inject faults. It is not a language
    model: use it to dry-run pipelines, e.g. `josh eval toolwoz --model josh-mock-agent --base-url URL`.
    """
    try:
        config = MockConfig(mistake_rate=mistake_rate, latency_s=latency, error_rate=error_rate, hang_rate=hang_rate,
                            hang_s=hang_seconds, malformed_rate=malformed_rate, empty_rate=empty_rate, seed=seed)  # fmt: skip
    except ValueError as exc:
        raise JoshError(str(exc)) from None
    env = ToolWOZEnvironment.load(report)
    try:
        server = MockServer(env, config, port=port)
    except OSError as exc:
        raise JoshError(f"cannot listen on 127.0.0.1:{port}: {exc.strerror}; choose another --port") from None
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
