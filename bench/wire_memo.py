"""Benchmark: `IdentityMemo` (josh's memo of wire messages) once its budget is full, against the same memo
on a plain dict (josh's before 2026-12-08), in one run.

A long harvest fills the memo's budget (about 29,000 ToolWOZ messages; `bench/josh_orchestration.py`'s
harvest adds ~2,200 a run), and from then on every new message evicts the oldest. A plain dict's oldest
entry is found with `next(iter(d))`, which walks past every slot emptied since the dict last resized: the
cost of an insert grows with the memo. An `OrderedDict` takes its oldest in constant time.

Usage: python bench/wire_memo.py [--entries 30000] [--inserts 120000]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from josh.llm.openai_compat.wire_memo import IdentityMemo


class PlainDictMemo(IdentityMemo[Any, Any]):
    """The memo as it was: a plain dict, its oldest entry taken with `next(iter(...))`."""

    def __init__(self, budget: int) -> None:
        super().__init__(lambda obj: obj, budget)
        self._entries = {}  # type: ignore[assignment]

    def __call__(self, obj: Any) -> Any:
        entry = self._entries.get(id(obj))
        if entry is not None and entry[0] is obj:
            return entry[1]
        self._entries[id(obj)] = (obj, obj, 1)
        self._weight += 1
        while self._weight > self._budget:
            del self._entries[next(iter(self._entries))]
            self._weight -= 1
        return obj


def per_insert_us(memo: IdentityMemo[Any, Any], objects: list[object], budget: int) -> tuple[float, float]:
    """Microseconds an insert while filling the budget, then once it is full (every insert evicting one)."""
    started = time.perf_counter()
    for obj in objects[:budget]:
        memo(obj)
    filling = (time.perf_counter() - started) / budget * 1e6
    started = time.perf_counter()
    for obj in objects[budget:]:
        memo(obj)
    full = (time.perf_counter() - started) / (len(objects) - budget) * 1e6
    return filling, full


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=30_000, help="the budget, in entries")
    parser.add_argument("--inserts", type=int, default=120_000, help="inserts once it is full")
    args = parser.parse_args()
    objects = [object() for _ in range(args.entries + args.inserts)]
    plain = per_insert_us(PlainDictMemo(args.entries), objects, args.entries)
    ordered = per_insert_us(IdentityMemo(lambda obj: obj, args.entries), objects, args.entries)
    print(f"IdentityMemo, {args.entries:,} entries, then {args.inserts:,} inserts that each evict the oldest:")
    print(f"  plain dict (before):  {plain[0]:6.2f} us an insert filling, {plain[1]:6.2f} us once full")
    print(f"  OrderedDict (now):    {ordered[0]:6.2f} us an insert filling, {ordered[1]:6.2f} us once full")
    print(f"once full, the plain dict's insert costs {plain[1] / ordered[1]:.1f}x the OrderedDict's")


if __name__ == "__main__":
    main()
