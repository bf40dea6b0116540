"""The live progress of a run: totals of the whole run file, counted as the final summary counts them, shown as
a bar on a terminal and as whole periodic lines anywhere else (a pipe, a log file)."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from josh.runner.summary import has_golden_path, record_reward

EVERY_S = 30.0  # piped: a progress line at most this long after the last one, while records arrive
STEPS = 10  # piped: and one at each tenth of the run


@dataclass
class _Row:
    reward: float
    error: bool
    tokens: int
    cost: float | None
    golden: bool | None  # a JOSH tree with a golden path; None for a conversation


def _row(record: dict[str, Any]) -> _Row:
    tokens, cost = 0, 0.0
    priced = True
    for role in ("agent", "user"):
        usage = record.get(f"{role}_usage") or {}
        tokens += int(usage.get("prompt_tokens") or 0) + int(usage.get("completion_tokens") or 0)
        value = usage.get("cost", 0.0)
        if value is None:
            priced = False
        else:
            cost += float(value)
    golden = has_golden_path(record) if "nodes" in record else None
    error = record.get("status") != "success"
    return _Row(record_reward(record), error, tokens, cost if priced else None, golden)


class LiveTotals:
    """The latest record of every (task, trial) of a run file, old and new: a resumed run shows the totals
    of the whole file, a retried conversation replaces its error, and errors count as reward 0 (as in the
    paper and the final table)."""

    def __init__(self, records: Iterable[dict[str, Any]] = ()) -> None:
        self._rows: dict[tuple[str, int], _Row] = {}
        for record in records:
            self.add(record)

    def add(self, record: dict[str, Any]) -> None:
        self._rows[(record["task_id"], int(record.get("trial", 0)))] = _row(record)

    @property
    def count(self) -> int:
        return len(self._rows)

    @property
    def errors(self) -> int:
        return sum(row.error for row in self._rows.values())

    def line(self) -> str:
        rows = list(self._rows.values())
        if not rows:
            return "nothing finished yet"
        average = sum(r.reward for r in rows) / len(rows)
        perfect = sum(r.reward == 1.0 for r in rows) / len(rows)
        tokens = sum(r.tokens for r in rows)
        costs = [r.cost for r in rows]
        priced = [c for c in costs if c is not None]
        cost = (
            "unpriced"
            if not priced
            else f"${sum(priced):.2f}" + (" + unpriced" if len(priced) < len(costs) else "")
        )
        trees = [r.golden for r in rows if r.golden is not None]
        golden = f" · golden paths {sum(trees):,}" if trees else ""
        return (
            f"reward {average:.3f} · 100% {perfect:.3f}{golden} · err {self.errors} · "
            f"{f'{tokens:,}' if tokens < 1000 else f'{tokens / 1000:,.0f}k'} tok · {cost}"
        )


def elapsed(seconds: float) -> str:
    """`45s`, `1m20s`, `2h05m`."""
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class ProgressLines:
    """Progress as whole lines, for output that is not a terminal: there a live bar is drawn once, at the
    end, cut to 80 columns ("━━ 20… 0…"). One line at each tenth of the run, one whenever `every_s` have
    passed since the last (checked as records arrive), and one at the end, e.g.
    "eval toolwoz: 20/450 conversations · reward 0.800 · 100% 0.600 · err 3 · 41k tok · $0.12 · 1m20s elapsed".
    """

    def __init__(
        self,
        say: Callable[[str], None],
        label: str,
        kind: str,
        total: int,
        done: int,
        totals: LiveTotals,
        *,
        every_s: float = EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._say, self._label, self._kind, self._totals = say, label, kind, totals
        self.total, self.done = total, done
        self._every_s, self._clock = every_s, clock
        self._started = self._last = clock()
        self._said = done  # nothing new to say until a record arrives
        self._next = self._next_step()

    def _next_step(self) -> int:
        """The count done at the next tenth of the run after the current one."""
        if self.total <= 0:
            return 1
        step = math.floor(self.done * STEPS / self.total) + 1
        return math.ceil(self.total * step / STEPS)

    def line(self) -> str:
        return (
            f"{self._label}: {self.done:,}/{self.total:,} {self._kind} · {self._totals.line()} · "
            f"{elapsed(self._clock() - self._started)} elapsed"
        )

    def advance(self) -> None:
        """One more record finished: say a line if a tenth was reached or `every_s` have passed."""
        self.done += 1
        if self.done >= self._next or self._clock() - self._last >= self._every_s:
            self._emit()

    def close(self) -> None:
        """The last line, unless the last one said already said it all."""
        if self.done != self._said:
            self._emit()

    def _emit(self) -> None:
        self._say(self.line())
        self._said, self._last, self._next = self.done, self._clock(), self._next_step()


@contextlib.contextmanager
def live_progress(
    console: Console, label: str, kind: str, total: int, done: int, totals: LiveTotals
) -> Iterator[Callable[[], None]]:
    """Show the progress of a run of `total` (`done` already): yields the function to call as each record
    is added to `totals`. A bar on a terminal, `ProgressLines` elsewhere."""
    if not console.is_terminal:
        lines = ProgressLines(
            lambda text: console.print(text, soft_wrap=True, markup=False, highlight=False),
            label, kind, total, done, totals,
        )  # fmt: skip
        try:
            yield lines.advance
        finally:
            lines.close()
        return
    with Progress(
        BarColumn(bar_width=12), MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("{task.description}"),
        console=console, transient=False,
    ) as progress:  # fmt: skip
        bar = progress.add_task(totals.line(), total=total, completed=done)
        yield lambda: progress.update(bar, advance=1, description=totals.line())
