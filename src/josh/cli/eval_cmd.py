"""`josh eval NAME` (one command per registered benchmark), `josh report` and `josh serve-mock`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from josh.benchmarks.benchmark import BenchmarkCommands
from josh.benchmarks.endpoints import mock_config
from josh.benchmarks.harvest_options import HarvestOptions
from josh.benchmarks.jobs import error_record
from josh.benchmarks.run_options import SCRIPTED, MockOptions
from josh.cli.benchmarks import BENCHMARKS, ServeMockOptions, registered
from josh.cli.console import err, out, report, user_errors
from josh.cli.options import flag_name, resolve, with_options
from josh.cli.render import print_comparison, print_summary, settings_table
from josh.cli.run_flow import RunJob, benchmark_work, execute, resolve_run, run_command
from josh.errors import JoshError
from josh.mock import MockServer
from josh.runner import RunContents, read_run, summarize
from josh.runner.compare import KIND_NAMES, compare_runs, run_kind

eval_app = typer.Typer(
    help="Evaluate an agent on a benchmark: ToolWOZ (the paper's) or tau2-bench (airline, retail, telecom).",
    no_args_is_help=True,
)


def add_eval_command(entry: BenchmarkCommands) -> None:
    """`josh eval NAME` for one registered benchmark: its options, its help, its evaluation."""

    def command(
        *,
        options: dict[str, Any],
        config_file: Path | None,
        out_path: Path | None,
        resume: bool,
        retry_errors: bool,
    ) -> None:
        cfg = resolve_run(entry.eval_config, options, config_file, resume=resume, retry_errors=retry_errors)

        job = RunJob(
            f"eval {entry.name}", "conversations", cfg, out_path, resume, retry_errors,
            benchmark_work(entry.evaluate, entry.benchmark(cfg), cfg, error_record, retry_errors),
            entry.out_prefix(cfg), entry.benchmark(cfg),
        )  # fmt: skip
        execute(job)

    command.__name__ = command.__qualname__ = f"eval_{entry.name}"
    command.__doc__ = entry.eval_help
    eval_app.command(entry.name)(user_errors(run_command(entry.eval_config)(command)))


for _entry in BENCHMARKS:
    add_eval_command(_entry)


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
    run: Annotated[
        Path,
        typer.Argument(help="A run file (JSONL) written by josh eval or josh harvest, or a josh loop folder."),
    ],
    other: Annotated[
        Path | None,
        typer.Argument(
            help="A second run file of the same kind (eval or harvest), or a second loop folder, to compare."
        ),
    ] = None,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the summary (or the comparison) as JSON instead of tables.")
    ] = False,
) -> None:
    """Summarise a run, or compare two evals or two harvests: each run's settings, metrics side by side, and
    a paired permutation test with a bootstrap interval over the tasks both ran.

    Given two `josh loop` folders (e.g. one of `method: kto` and one of `method: rft`), shows both loops'
    rounds side by side (reward, success, what each round's harvest spent, the examples trained on), then
    compares their last rounds' evaluations as two eval runs."""
    if run.is_dir() or (other is not None and other.is_dir()):
        compare_loops(run, other, json_out)
        return
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


def compare_loops(first: Path, second: Path | None, json_out: bool) -> None:
    """`josh report LOOP_A [LOOP_B]`: the loops' rounds side by side, then their last evaluations compared."""
    from rich.table import Table

    from josh.loop.report import loop_rows, read_loop_report

    folders = [first] if second is None else [first, second]
    if any(not folder.is_dir() for folder in folders):
        raise JoshError("josh report compares two loop folders or two run files, not one of each")
    reports = [read_loop_report(folder) for folder in folders]
    names = [f"{folder.name} ({report['method']})" for folder, report in zip(folders, reports, strict=True)]
    rows = loop_rows(reports)
    lasts = [report["rounds"][-1] for report in reports]
    last_runs = [read_run(Path(last["run_file"])).records for last in lasts] if len(lasts) == 2 else []
    paired = compare_runs(last_runs[0], last_runs[1]) if last_runs else None
    if json_out:
        payload: dict[str, Any] = {"loops": names, "header": ["round", "measure", *names], "rows": rows}
        if paired is not None:
            payload["paired"] = paired
        out.print_json(json.dumps(payload))
        return
    table = Table(title="loops side by side, every round (round 0: the base model)", title_justify="left")
    for column in ("round", "measure", *names):
        table.add_column(column, justify="left" if column in ("round", "measure") else "right")
    for row in rows:
        table.add_row(*row)
    out.print(table)
    if paired is not None:
        labels = (f"{names[0]} round {lasts[0]['round']}", f"{names[1]} round {lasts[1]['round']}")
        print_comparison(out, summarize(last_runs[0]), summarize(last_runs[1]), labels, paired)


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
    served = registered(settings.benchmark)
    benchmark = served.served(settings.domain)
    env = benchmark.load(report)
    try:
        server = MockServer(
            env, mock_config(settings), port=settings.port, quiet_resets=False, script=benchmark.mock_script
        )
    except OSError as exc:
        raise JoshError(
            f"cannot listen on 127.0.0.1:{settings.port}: {exc.strerror}; choose another --port"
        ) from None
    playing = f", playing {benchmark.name} tasks" if served is not BENCHMARKS[0] else ""  # not the default
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
