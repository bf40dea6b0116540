"""`josh score`: score tool-call trajectories recorded elsewhere with the ToolWOZ reward."""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path
from typing import IO, Annotated, Any

import typer
from rich.table import Table

from josh.cli.console import err, report, user_errors
from josh.envs.toolwoz.env import ToolWOZEnvironment
from josh.errors import JoshError, UnknownTaskError


def _parse_line(line: str) -> tuple[str, list[tuple[Any, Any]]]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(record, dict):
        raise ValueError("a line must be a JSON object with task_id and calls")
    task_id = record.get("task_id")
    if not isinstance(task_id, str):
        raise ValueError('missing "task_id" (a string)')
    calls = record.get("calls")
    if not isinstance(calls, list):
        raise ValueError('missing "calls" (a list of {"name", "arguments"})')
    parsed = []
    for i, call in enumerate(calls):
        if not isinstance(call, dict) or "name" not in call:
            raise ValueError(f'call {i} must be an object with "name" and "arguments"')
        parsed.append((call["name"], call.get("arguments", {})))
    return task_id, parsed


def score_stream(env: ToolWOZEnvironment, lines: IO[str], sink: IO[str]) -> dict[str, Any]:
    """Score each JSONL line of `lines` into `sink`; return the summary. Bad lines become error records."""
    rewards: list[float] = []
    errors = 0
    per_domain: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])  # tasks, goal calls met, goal calls
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            task_id, calls = _parse_line(line)
            session = env.session(task_id)
        except (ValueError, UnknownTaskError) as exc:
            errors += 1
            record: dict[str, Any] = {"line": number, "error": str(exc)}
            try:
                maybe = json.loads(line)
                if isinstance(maybe, dict) and "task_id" in maybe:
                    record = {"task_id": maybe["task_id"], **record}
            except json.JSONDecodeError:
                pass
            sink.write(json.dumps(record) + "\n")
            continue
        results = [session.call(name, arguments) for name, arguments in calls]
        reward = session.score()
        rewards.append(reward)
        met = {g.name for g in session.met_goals()}
        for domain in session.task.domains:
            goals = [g for g in session.task.goal_calls if g.domain == domain]
            stats = per_domain[domain]
            stats[0] += 1
            stats[1] += sum(g.name in met for g in goals)
            stats[2] += len(goals)
        original = json.loads(line)
        original["results"] = results
        original["reward"] = reward
        original["reward_events"] = [g.name for g in session.reward_events]
        original["failed_goals"] = [g.to_dict() for g in session.failed_goals()]
        sink.write(json.dumps(original, ensure_ascii=False) + "\n")
    scored = len(rewards)
    return {
        "scored": scored,
        "errors": errors,
        "average_reward": sum(rewards) / scored if scored else 0.0,
        "success_rate": sum(r == 1.0 for r in rewards) / scored if scored else 0.0,
        "perfect": sum(r == 1.0 for r in rewards),
        "per_domain": {
            d: {"tasks": s[0], "met": s[1], "goal_calls": s[2]} for d, s in sorted(per_domain.items())
        },
    }


def print_summary(summary: dict[str, Any]) -> None:
    err.print(
        f"scored {summary['scored']:,} conversations ({summary['errors']:,} bad lines): "
        f"average reward [bold]{summary['average_reward']:.3f}[/bold], "
        f"100% success rate [bold]{summary['success_rate']:.3f}[/bold] ({summary['perfect']:,} at 1.0)"
    )
    if summary["per_domain"]:
        table = Table(title="per domain", title_justify="left")
        for col in ("domain", "tasks", "goal calls met", "share met"):
            table.add_column(col, justify="left" if col == "domain" else "right")
        for domain, s in summary["per_domain"].items():
            share = s["met"] / s["goal_calls"] if s["goal_calls"] else 0.0
            table.add_row(domain, f"{s['tasks']:,}", f"{s['met']:,}/{s['goal_calls']:,}", f"{share:.3f}")
        err.print(table)


@user_errors
def score(
    path: Annotated[
        Path | None, typer.Argument(help="JSONL file of trajectories; '-' or nothing reads standard input.")
    ] = None,
    output: Annotated[
        Path | None, typer.Option("--out", "-o", help="Write the scored JSONL here (default stdout).")
    ] = None,
    summary_json: Annotated[
        Path | None, typer.Option(help="Also write the summary as JSON to this file.")
    ] = None,
) -> None:
    """Score trajectories recorded elsewhere.

    Each input line: {"task_id": "MUL0003", "calls": [{"name": "search_hotel", "arguments": {...}}, ...]}.
    Each output line: the same fields plus "results" (each call's tool result), "reward" (the score:
    met goal calls / goal calls), "reward_events" and "failed_goals". A malformed line or unknown task id
    gives an error record for that line; the rest are still scored. The summary goes to stderr.
    """
    if path is not None and str(path) != "-" and not path.is_file():
        raise JoshError(f"{path} does not exist or is not a file")
    env = ToolWOZEnvironment.load(report)
    source = sys.stdin if path is None or str(path) == "-" else open(path, encoding="utf-8")  # noqa: SIM115
    sink = sys.stdout if output is None else open(output, "w", encoding="utf-8")  # noqa: SIM115
    try:
        summary = score_stream(env, source, sink)
    finally:
        if source is not sys.stdin:
            source.close()
        if sink is not sys.stdout:
            sink.close()
        else:
            sink.flush()
    print_summary(summary)
    if summary_json is not None:
        summary_json.write_text(json.dumps(summary, indent=2) + "\n")
