"""Comparing two runs on the tasks both ran: a paired permutation test and a paired bootstrap interval.

Rewards are counted as in the paper (a conversation that ended in an error scores 0) and averaged per task
over its trials, so each shared task gives one paired difference `b - a`.
"""

from __future__ import annotations

import itertools
import random
from collections import defaultdict
from collections.abc import Iterable
from typing import Any, Literal

from josh.runner.summary import bootstrap_ci, latest_by_key, record_reward

EXACT_UP_TO = 16  # tasks; beyond this the permutation test samples sign flips
PERMUTATIONS = 20_000
BOOTSTRAP = 2_000
RunKind = Literal["eval", "harvest"]
KIND_NAMES: dict[RunKind, str] = {"eval": "an eval (conversations)", "harvest": "a harvest (JOSH trees)"}


def run_kind(header: dict[str, Any], records: Iterable[dict[str, Any]]) -> RunKind | None:
    """What wrote a run file: `josh eval` or `josh harvest`, from the header's command ("eval tau2"), else
    from the records (a tree has nodes); None when neither tells. Only runs of one kind compare: an eval's
    reward is one conversation's, a harvest's a whole search tree's."""
    command = header.get("command")
    verb = command.split(" ", 1)[0] if isinstance(command, str) else None
    if verb in ("eval", "harvest"):
        return verb  # type: ignore[return-value]
    for record in records:
        if "nodes" in record:
            return "harvest"
        if "termination" in record or "calls" in record:
            return "eval"
    return None


def task_rewards(records: Iterable[dict[str, Any]]) -> dict[str, float]:
    """Mean reward of each task over its trials (errors count 0)."""
    by_task: dict[str, list[float]] = defaultdict(list)
    for record in latest_by_key(records):
        by_task[record["task_id"]].append(record_reward(record))
    return {task: sum(values) / len(values) for task, values in by_task.items()}


def permutation_p_value(differences: list[float], *, seed: int = 0) -> float:
    """Two-sided paired permutation test of "mean difference = 0": the share of sign flips of the
    differences whose mean is at least as far from 0 as the observed one. Exact when there are at most
    `EXACT_UP_TO` non-zero differences, otherwise over `PERMUTATIONS` random flips (with the usual +1)."""
    nonzero = [d for d in differences if d != 0]
    if not nonzero:
        return 1.0
    observed = abs(sum(nonzero))
    tolerance = 1e-12 * max(1.0, observed)
    if len(nonzero) <= EXACT_UP_TO:
        hits = total = 0
        for signs in itertools.product((1, -1), repeat=len(nonzero)):
            total += 1
            hits += abs(sum(s * d for s, d in zip(signs, nonzero, strict=True))) >= observed - tolerance
        return hits / total
    rng = random.Random(seed)
    hits = 0
    for _ in range(PERMUTATIONS):
        flipped = sum(d if rng.random() < 0.5 else -d for d in nonzero)
        hits += abs(flipped) >= observed - tolerance
    return (hits + 1) / (PERMUTATIONS + 1)


def compare_runs(a: Iterable[dict[str, Any]], b: Iterable[dict[str, Any]]) -> dict[str, Any]:
    """Paired comparison of run `b` against run `a` over the tasks both ran."""
    first, second = task_rewards(a), task_rewards(b)
    shared = sorted(set(first) & set(second))
    differences = [second[t] - first[t] for t in shared]
    low, high = bootstrap_ci(differences, samples=BOOTSTRAP)
    return {
        "common": len(shared),
        "only_a": len(set(first) - set(second)),
        "only_b": len(set(second) - set(first)),
        "better": sum(d > 0 for d in differences),
        "worse": sum(d < 0 for d in differences),
        "equal": sum(d == 0 for d in differences),
        "mean_a": sum(first[t] for t in shared) / len(shared) if shared else None,
        "mean_b": sum(second[t] for t in shared) / len(shared) if shared else None,
        "mean_difference": sum(differences) / len(differences) if differences else None,
        "difference_ci95": [low, high] if differences else None,
        "p_value": permutation_p_value(differences) if differences else None,
        "test": "paired permutation test (two-sided) over per-task mean rewards, errors counted as 0",
    }
