"""Metrics of a run, from its records: reward, 100% success, pass^k, a bootstrap CI, per domain and API."""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from typing import Any

from josh.agents.text_tool_calls import SPOKEN_NOTE_END, TEXT_TOOL_CALL_NOTE
from josh.types import goal_tool


def latest_by_key(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One record per (task_id, trial): the last one written."""
    keyed: dict[tuple[str, int], dict[str, Any]] = {}
    for record in records:
        keyed[(record["task_id"], int(record.get("trial", 0)))] = record
    return list(keyed.values())


def pass_hat_k(successes: int, trials: int, k: int) -> float:
    """tau-bench's pass^k for one task: the chance that k trials drawn without replacement all succeed."""
    if trials < k:
        return float("nan")
    return math.comb(successes, k) / math.comb(trials, k)


def bootstrap_ci(values: list[float], *, samples: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% percentile bootstrap interval of the mean."""
    if not values:
        return (0.0, 0.0)
    rng = random.Random(seed)
    n = len(values)
    means = sorted(sum(rng.choice(values) for _ in range(n)) / n for _ in range(samples))
    return (means[int(0.025 * samples)], means[min(samples - 1, int(0.975 * samples))])


def _usage(record: dict[str, Any], role: str) -> dict[str, float]:
    return record.get(f"{role}_usage") or {}


def _role_cost(rows: list[dict[str, Any]], role: str) -> float | None:
    """USD spent by one role, or None (unpriced) when a record that made model calls has no price."""
    costs = []
    for r in rows:
        value = _usage(r, role).get("cost", 0.0)
        if value is None and int(r.get(f"{role}_model_calls", 1) or 0) == 0:
            value = 0.0  # no calls, nothing to price
        costs.append(value)
    return _sum_or_none(costs)


def _sum_or_none(values: Iterable[float | None]) -> float | None:
    total = 0.0
    for value in values:
        if value is None:
            return None
        total += float(value)
    return total


def _count_calls(rows: list[dict[str, Any]], *, cached: bool = False, failed: bool = False) -> dict[str, int]:
    """Model calls per role from the records' ledgers: served from the response cache, or failed."""
    counts = {"agent": 0, "user": 0}
    for row in rows:
        for call in row.get("model_calls") or []:
            if not isinstance(call, dict) or call.get("role") not in counts:
                continue
            if (cached and call.get("cached")) or (failed and call.get("error")):
                counts[call["role"]] += 1
    return counts


def _first_line(error: Any) -> str:
    """The first line of a record's error, cut to 160 characters ("" when it has none, whatever it holds)."""
    lines = str(error or "").splitlines()
    return lines[0][:160] if lines else ""


def record_reward(record: dict[str, Any]) -> float:
    """A record's reward as the paper counts it: a conversation that failed with an error scores 0."""
    if record.get("status") == "success" and record.get("reward") is not None:
        return float(record["reward"])
    return 0.0


def summarize(records: Iterable[dict[str, Any]], *, wall_s: float | None = None) -> dict[str, Any]:
    """The summary `josh eval` prints and saves as RUN.summary.json.

    As in the paper, a conversation that ended in an error counts as reward 0 (and its goal calls as failed)
    in every headline number; `average_reward_scored` leaves errors out.
    """
    rows = latest_by_key(records)
    scored = [r for r in rows if r.get("status") == "success" and r.get("reward") is not None]
    errors = [r for r in rows if r.get("status") != "success"]
    text_calls = [
        note
        for r in rows
        for note in r.get("notes") or []
        if isinstance(note, str) and TEXT_TOOL_CALL_NOTE in note
    ]
    rewards = [record_reward(r) for r in rows]

    by_task: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        by_task[r["task_id"]].append(record_reward(r))
    task_means = [sum(v) / len(v) for v in by_task.values()]
    trials = max((len(v) for v in by_task.values()), default=0)
    pass_k = {}
    for k in range(1, trials + 1):
        values = [pass_hat_k(sum(x == 1.0 for x in v), len(v), k) for v in by_task.values() if len(v) >= k]
        if values:
            pass_k[str(k)] = sum(values) / len(values)

    per_api: dict[str, Counter[str]] = defaultdict(Counter)
    per_domain_goals: dict[str, Counter[str]] = defaultdict(Counter)
    per_domain_rewards: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        goals = r.get("goal_calls", [])
        failed = Counter(goals if r.get("status") != "success" else _failed_goals(r))
        domain_of = _goal_domains(r)
        for key in goals:
            api, missed = goal_tool(key), failed[key] > 0
            failed[key] -= missed
            for counts in (per_api[api], per_domain_goals[domain_of(api)]):
                counts["goal_calls"] += 1
                counts["failed"] += missed
        for domain in _record_domains(r):
            per_domain_rewards[domain].append(record_reward(r))
    per_domain: dict[str, dict[str, Any]] = {}
    for domain in set(per_domain_goals) | set(per_domain_rewards):
        counts, values = per_domain_goals[domain], per_domain_rewards[domain]
        per_domain[domain] = {
            "goal_calls": counts["goal_calls"],
            "met": counts["goal_calls"] - counts["failed"],
            "tasks": len(values),
            "average_reward": sum(values) / len(values) if values else 0.0,
            "share_met": (counts["goal_calls"] - counts["failed"]) / counts["goal_calls"]
            if counts["goal_calls"]
            else 0.0,
        }

    tokens = {
        role: {
            "prompt": int(sum(_usage(r, role).get("prompt_tokens", 0) for r in rows)),
            "completion": int(sum(_usage(r, role).get("completion_tokens", 0) for r in rows)),
        }
        for role in ("agent", "user")
    }
    cost = {role: _role_cost(rows, role) for role in ("agent", "user")}
    low, high = bootstrap_ci(task_means)
    scored_rewards = [float(r["reward"]) for r in scored]
    return {
        "tasks": len(by_task),
        "records": len(rows),
        "scored": len(scored),
        "errors": len(errors),
        "trials": trials,
        "average_reward": sum(rewards) / len(rewards) if rewards else 0.0,
        "average_reward_scored": sum(scored_rewards) / len(scored_rewards) if scored_rewards else 0.0,
        "success_rate": sum(x == 1.0 for x in rewards) / len(rewards) if rewards else 0.0,
        "perfect": sum(x == 1.0 for x in rewards),
        "pass_hat_k": pass_k,
        "average_reward_ci95": [low, high],
        "per_domain": dict(sorted(per_domain.items())),
        "per_api": {
            api: {
                "goal_calls": c["goal_calls"],
                "failed": c["failed"],
                "failure_rate": c["failed"] / c["goal_calls"] if c["goal_calls"] else 0.0,
            }
            for api, c in sorted(per_api.items())
        },  # fmt: skip
        "terminations": dict(Counter(r.get("termination") or r.get("ended") or "?" for r in rows)),
        "error_messages": dict(Counter(_first_line(r.get("error")) for r in errors).most_common(5)),
        "tokens": tokens,
        "cost_usd": {**cost, "total": _sum_or_none([cost["agent"], cost["user"]])},
        "text_tool_calls": len(text_calls),
        "text_tool_calls_spoken": sum(note.endswith(SPOKEN_NOTE_END) for note in text_calls),
        "cached_calls": _count_calls(rows, cached=True),
        "failed_calls": _count_calls(rows, failed=True),
        "model_calls": {role: sum(_model_calls(r, role) for r in rows) for role in ("agent", "user")},
        **({"trees": _tree_stats(rows)} if any("nodes" in r for r in rows) else {}),
        "wall_s": wall_s,
    }


def _toolwoz_domain(api: str) -> str:
    """ToolWOZ's naming: an API's domain is its name's suffix (`book_hotel` -> `hotel`)."""
    return api.split("_", 1)[-1]


def _record_domains(record: dict[str, Any]) -> list[str]:
    """The domains a record belongs to: those its benchmark wrote, else (ToolWOZ's records before they
    carried them) the suffixes of its goal calls' names."""
    written = record.get("domains")
    if written:
        return sorted(set(written))
    return sorted({_toolwoz_domain(goal_tool(key)) for key in record.get("goal_calls", [])})


def _goal_domains(record: dict[str, Any]) -> Callable[[str], str]:
    """Where a record's goal calls count: all in its one domain, or (a ToolWOZ task over several domains, or
    a record without domains) each in the domain its API's name ends with."""
    written = sorted(set(record.get("domains") or []))
    if len(written) == 1:
        return lambda api: written[0]
    return _toolwoz_domain


def _failed_goals(record: dict[str, Any]) -> list[str]:
    """A scored record's goal calls not met: a conversation lists them; a JOSH tree failed those its golden
    path did not credit."""
    if "nodes" not in record:
        return list(record.get("failed_goals") or [])
    left = Counter(record.get("goal_calls") or [])
    left.subtract(record.get("golden_reward_events") or [])
    return list(left.elements())


def _model_calls(record: dict[str, Any], role: str) -> int:
    """Finished model calls of one role: the record's count, else its ledger's successful calls."""
    if f"{role}_model_calls" in record:
        return int(record[f"{role}_model_calls"] or 0)
    calls = record.get("model_calls") or []
    return sum(1 for c in calls if isinstance(c, dict) and c.get("role") == role and not c.get("error"))


def has_golden_path(record: dict[str, Any]) -> bool:
    """Whether a harvest record's tree has a golden path: any golden node (the root alone, too, where the
    customer's opening met every goal, as in tau2's telecom)."""
    return any(isinstance(n, dict) and n.get("golden") for n in record.get("nodes") or [])


def _tree_stats(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """JOSH trees: how many have a golden path, their size, and how many nodes training data can use."""
    trees = [r for r in rows if "nodes" in r]
    nodes = [n for r in trees for n in r.get("nodes") or [] if isinstance(n, dict)]
    return {
        "trees": len(trees),
        "with_golden_path": sum(has_golden_path(r) for r in trees),
        "nodes": len(nodes),
        "successful_nodes": sum(bool(n.get("successful")) for n in nodes),
        "golden_nodes": sum(bool(n.get("golden")) for n in nodes),
        "average_nodes": len(nodes) / len(trees) if trees else 0.0,
        "largest": max((len(r.get("nodes") or []) for r in trees), default=0),
    }
