"""`josh score`: score tool-call trajectories recorded elsewhere with the ToolWOZ reward."""

from __future__ import annotations

import contextlib
import json
import sys
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Annotated, Any

import typer
from rich.table import Table

from josh.cli.console import counted, err, report, user_errors
from josh.envs.toolwoz.env import ToolWOZEnvironment
from josh.errors import JoshError, UnknownTaskError
from josh.runner.text_encoding import sniff_encoding
from josh.types import bounded, dumps_line

_CHUNK = 1 << 16


def _split(raw: IO[bytes], pending: bytearray, newline: bytes, unit: int) -> Iterator[bytes]:
    """The lines of a byte stream (without their newline); `unit` is the code unit size newlines align to."""
    searched = 0
    while True:
        end = pending.find(newline, searched)
        while end != -1 and end % unit:
            end = pending.find(newline, end + 1)
        if end == -1:
            chunk = raw.read(_CHUNK)
            if not chunk:
                if pending:
                    yield bytes(pending)
                return
            searched = max(0, len(pending) - len(newline) + 1)
            pending += chunk
            continue
        yield bytes(pending[:end])
        del pending[: end + len(newline)]
        searched = 0


def read_lines(raw: IO[bytes], say: Callable[[str], None] = report) -> Iterator[tuple[int, str | None, str]]:
    """(line number, text, why the line is unreadable) for each line of a byte stream; never raises on content.

    UTF-8 is expected (a UTF-8 byte-order mark is skipped). UTF-16, with or without a byte-order mark, is
    decoded as such, and said once through `say`. A line that does not decode gets text None and a reason.
    """
    head = b""
    while len(head) < 4:
        more = raw.read(4 - len(head))
        if not more:
            break
        head += more
    codec, bom, named = sniff_encoding(head)
    if named:
        say(f"the input is {named}; decoding it as such (josh expects UTF-8 and writes UTF-8)")
    newline = "\n".encode(codec)
    for number, data in enumerate(_split(raw, bytearray(head[bom:]), newline, len(newline)), start=1):
        try:
            yield number, data.decode(codec), ""
        except UnicodeDecodeError as exc:
            where = f"byte 0x{data[exc.start]:02x} at byte {exc.start + 1}"
            if codec == "utf-8":
                yield number, None, f"not UTF-8 ({where} of the line); josh reads UTF-8 JSON lines"
            else:
                yield number, None, f"not UTF-16 ({exc.reason} at byte {exc.start + 1} of the line)"


def _parse_line(line: str) -> tuple[dict[str, Any], str, list[tuple[Any, Any]]]:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not JSON ({exc.msg} at column {exc.colno})") from None
    except RecursionError:
        raise ValueError("not readable: nested too deep for a JSON reader") from None
    except ValueError as exc:  # an integer of more digits than Python converts (4,300 by default)
        detail = str(exc).split("; use sys.")[0]
        raise ValueError(f"not readable: a number too long for a JSON reader ({detail})") from None
    if not isinstance(record, dict):
        raise ValueError("a line must be a JSON object with task_id and calls")
    task_id = record.get("task_id")
    if not isinstance(task_id, str):
        raise _BadRecord(record, 'missing "task_id" (a string)')
    calls = record.get("calls")
    if not isinstance(calls, list):
        raise _BadRecord(record, 'missing "calls" (a list of {"name", "arguments"})')
    parsed = []
    for i, call in enumerate(calls):
        if not isinstance(call, dict) or "name" not in call:
            raise _BadRecord(record, f'call {i} must be an object with "name" and "arguments"')
        parsed.append((call["name"], call.get("arguments", {})))
    return record, task_id, parsed


class _BadRecord(ValueError):
    """A JSON object that is not a trajectory; its task_id (if any) goes into the error record."""

    def __init__(self, record: dict[str, Any], message: str):
        super().__init__(message)
        self.record = record


def score_stream(
    env: ToolWOZEnvironment, raw: IO[bytes], sink: IO[bytes], say: Callable[[str], None] = report
) -> dict[str, Any]:
    """Score each JSONL line of the byte stream `raw` into `sink` (UTF-8 JSON lines); return the summary.

    Every non-blank line gives one output line: the scored trajectory, or an error record
    `{"line": N, "error": "..."}` (with the task_id when it could be read). Never raises on content.
    """
    rewards: list[float] = []
    errors = 0
    per_domain: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])  # tasks, goal calls met, goal calls

    def write(obj: dict[str, Any]) -> None:
        sink.write((dumps_line(obj) + "\n").encode("utf-8"))

    for number, line, unreadable in read_lines(raw, say):
        if line is not None and not line.strip():
            continue
        record: dict[str, Any] = {}
        try:
            if line is None:
                raise ValueError(unreadable)
            record, task_id, calls = _parse_line(line)
            session = env.session(task_id)
            results = [session.call(name, arguments) for name, arguments in calls]
            reward = session.score()
            met = {g.name for g in session.met_goals()}
            failed = [g.to_dict() for g in session.failed_goals()]
        except Exception as exc:
            errors += 1
            if isinstance(exc, _BadRecord):
                record = exc.record
            reason = str(exc)
            if not isinstance(
                exc, ValueError | UnknownTaskError
            ):  # a bug of ours: it still costs one line only
                reason = f"could not score it: {type(exc).__name__}: {exc}"
            tagged = {"task_id": bounded(record["task_id"])} if "task_id" in record else {}
            write({**tagged, "line": number, "error": reason})
            continue
        record["results"] = results
        record["reward"] = reward
        record["reward_events"] = [g.name for g in session.reward_events]
        record["failed_goals"] = failed
        rewards.append(reward)
        for domain in session.task.domains:
            goals = [g for g in session.task.goal_calls if g.domain == domain]
            stats = per_domain[domain]
            stats[0] += 1
            stats[1] += sum(g.name in met for g in goals)
            stats[2] += len(goals)
        write(record)
    scored = len(rewards)
    return {
        "scored": scored,
        "errors": errors,
        "average_reward": sum(rewards) / scored if scored else None,
        "success_rate": sum(r == 1.0 for r in rewards) / scored if scored else None,
        "perfect": sum(r == 1.0 for r in rewards),
        "per_domain": {
            d: {"tasks": s[0], "met": s[1], "goal_calls": s[2]} for d, s in sorted(per_domain.items())
        },
    }


def print_summary(summary: dict[str, Any]) -> None:
    if not summary["scored"]:
        bad = summary["errors"]
        err.print(
            "no trajectories to score "
            + (
                f"({counted(bad, 'bad line')}; see their error records)"
                if bad
                else "(the input has no non-blank line)"
            )
        )
        return
    err.print(
        f"scored {counted(summary['scored'], 'conversation')} ({counted(summary['errors'], 'bad line')}): "
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
    met goal calls / goal calls), "reward_events" and "failed_goals". A line that cannot be read (not UTF-8,
    not JSON, nested too deep) or names an unknown task gives an error record {"line", "error"} instead;
    the rest are still scored, and the exit code stays 0. Input is UTF-8 (UTF-16 is detected and decoded);
    output is always UTF-8. The summary goes to stderr.
    """
    from_stdin = path is None or str(path) == "-"
    if not from_stdin and not path.exists():
        raise JoshError(f"{path} does not exist")
    if not from_stdin and path.is_dir():
        raise JoshError(f"{path} is a folder: name a JSONL file of trajectories")  # a pipe, /dev/null: read
    with contextlib.ExitStack() as stack:
        # Bytes in and out: each line is decoded on its own, so one bad line cannot stop the rest.
        source = sys.stdin.buffer if from_stdin else stack.enter_context(_open(path, "rb"))
        sink = sys.stdout.buffer if output is None else stack.enter_context(_open(output, "wb"))
        env = ToolWOZEnvironment.load(report)
        summary = score_stream(env, source, sink)
        sink.flush()
    print_summary(summary)
    if summary_json is not None:
        try:
            summary_json.write_text(json.dumps(summary, indent=2) + "\n")
        except OSError as exc:
            raise JoshError(f"cannot write the summary to {summary_json}: {exc.strerror or exc}") from None


def _open(path: Path, mode: str) -> IO[bytes]:
    try:
        return open(path, mode)  # noqa: SIM115
    except OSError as exc:
        doing = "read" if "r" in mode else "write"
        raise JoshError(f"cannot {doing} {path}: {exc.strerror or exc}") from None
