"""The live progress line of a run: totals of the whole run file, counted as the final summary counts them."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from josh.runner.summary import record_reward


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
    golden = None
    if "nodes" in record:
        nodes = [n for n in record["nodes"] or [] if isinstance(n, dict)]
        golden = any(n.get("golden") and n.get("parent") is not None for n in nodes)
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
            f"{tokens / 1000:,.0f}k tok · {cost}"
        )
