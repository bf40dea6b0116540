"""Rich rendering of run summaries: one run, or two side by side."""

from __future__ import annotations

import math
from typing import Any

from rich.console import Console
from rich.table import Table


def _pct(x: float) -> str:
    return f"{x:.3f}"


def _usd(x: float | None) -> str:
    return "unpriced" if x is None else f"{x:.4f}"


def summary_table(summary: dict[str, Any], title: str) -> Table:
    table = Table(title=title, title_justify="left", show_header=False)
    table.add_column("metric")
    table.add_column("value", justify="right")
    low, high = summary["average_reward_ci95"]
    table.add_row("tasks / records", f"{summary['tasks']:,} / {summary['records']:,}")
    table.add_row("scored / errors", f"{summary['scored']:,} / {summary['errors']:,}")
    table.add_row("average reward", f"{_pct(summary['average_reward'])}  (95% CI {low:.3f}-{high:.3f})")
    table.add_row("100% success rate", f"{_pct(summary['success_rate'])}  ({summary['perfect']:,} at 1.0)")
    if summary["errors"]:
        table.add_row("average reward (errors left out)", _pct(summary["average_reward_scored"]))
    for k, value in summary["pass_hat_k"].items():
        table.add_row(f"pass^{k}", _pct(value))
    table.add_row("terminations", ", ".join(f"{k} {v}" for k, v in sorted(summary["terminations"].items())))
    tokens = summary["tokens"]
    table.add_row(
        "tokens (prompt/completion)",
        f"agent {tokens['agent']['prompt']:,}/{tokens['agent']['completion']:,}  "
        f"user {tokens['user']['prompt']:,}/{tokens['user']['completion']:,}",
    )
    calls, cached, failed = summary["model_calls"], summary.get("cached_calls"), summary.get("failed_calls")
    if cached is not None and failed is not None:
        table.add_row(
            "model calls",
            "  ".join(
                f"{role} {calls[role]:,}"
                + (f" (+{failed[role]:,} failed)" if failed[role] else "")
                + (f", {cached[role]:,} from the cache" if cached[role] else "")
                for role in ("agent", "user")
            ),
        )
    cost = summary["cost_usd"]
    table.add_row(
        "cost (USD)", f"{_usd(cost['total'])}  (agent {_usd(cost['agent'])}, user {_usd(cost['user'])})"
    )
    if summary.get("trees"):
        trees = summary["trees"]
        table.add_row(
            "trees",
            f"{trees['with_golden_path']:,} with a golden path; {trees['nodes']:,} nodes "
            f"({trees['golden_nodes']:,} golden, {trees['successful_nodes']:,} successful; "
            f"{trees['average_nodes']:.1f} a tree, largest {trees['largest']:,})",
        )
    if summary.get("text_tool_calls"):
        table.add_row("tool calls written as text", _text_tool_calls(summary))
    if summary.get("wall_s") is not None:
        table.add_row("wall time", f"{summary['wall_s']:.1f} s")
    return table


def _text_tool_calls(summary: dict[str, Any]) -> str:
    """How many tool calls the agent wrote as text, and the flag that runs them when they were spoken."""
    count, spoken = summary["text_tool_calls"], summary.get("text_tool_calls_spoken", 0)
    if not spoken:
        return f"{count:,} (run as tool calls)"
    shown = f"{count:,}" if spoken == count else f"{count:,} ({spoken:,} of them)"
    return f"{shown} spoken to the customer: --parse-text-tool-calls runs them as tool calls"


def detail_tables(summary: dict[str, Any]) -> list[Table]:
    domains = Table(title="per domain", title_justify="left")
    for col in ("domain", "tasks", "average reward", "goal calls met", "share met"):
        domains.add_column(col, justify="left" if col == "domain" else "right")
    for domain, d in summary["per_domain"].items():
        domains.add_row(
            domain,
            f"{d['tasks']:,}",
            _pct(d["average_reward"]),
            f"{d['met']:,}/{d['goal_calls']:,}",
            _pct(d["share_met"]),
        )
    apis = Table(title="per API", title_justify="left")
    for col in ("API", "goal calls", "failed", "failure rate"):
        apis.add_column(col, justify="left" if col == "API" else "right")
    for api, a in summary["per_api"].items():
        apis.add_row(api, f"{a['goal_calls']:,}", f"{a['failed']:,}", _pct(a["failure_rate"]))
    tables = [domains, apis]
    if summary["error_messages"]:
        errors = Table(title="most common errors", title_justify="left")
        errors.add_column("count", justify="right")
        errors.add_column("error")
        for message, count in summary["error_messages"].items():
            errors.add_row(str(count), message)
        tables.append(errors)
    return tables


def print_summary(console: Console, summary: dict[str, Any], title: str) -> None:
    console.print(summary_table(summary, title))
    for table in detail_tables(summary):
        console.print(table)


def _number(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    if isinstance(value, int):
        return f"{value:,}"
    return f"{value:.3f}"


def _delta(x: Any, y: Any) -> str:
    if not isinstance(x, int | float) or not isinstance(y, int | float):
        return "n/a"
    if isinstance(x, int) and isinstance(y, int):
        return f"{y - x:+,}"
    return f"{y - x:+.3f}"


def settings_table(settings: list[dict[str, Any]], names: tuple[str, str], differing: list[str]) -> Table:
    """What each run was: model, agent, customer, split, trials... (differences marked)."""
    table = Table(title="runs", title_justify="left")
    table.add_column("setting")
    table.add_column(names[0])
    table.add_column(names[1])
    for key in settings[0]:
        mark = " (differs)" if key in differing else ""
        table.add_row(key + mark, *("-" if s[key] is None else str(s[key]) for s in settings))
    return table


def print_comparison(
    console: Console, a: dict[str, Any], b: dict[str, Any], names: tuple[str, str], paired: dict[str, Any]
) -> None:
    """Two runs side by side ("n/a" where a metric cannot be computed) and their paired test."""
    table = Table(title="comparison", title_justify="left")
    table.add_column("metric")
    table.add_column(names[0], justify="right")
    table.add_column(names[1], justify="right")
    table.add_column("delta", justify="right")
    rows = [
        ("tasks", a["tasks"], b["tasks"]),
        ("errors", a["errors"], b["errors"]),
        ("average reward", a["average_reward"], b["average_reward"]),
        ("100% success rate", a["success_rate"], b["success_rate"]),
        *[(f"pass^{k}", a["pass_hat_k"].get(k), b["pass_hat_k"].get(k))
          for k in sorted(set(a["pass_hat_k"]) | set(b["pass_hat_k"]), key=int)],
        *[(f"reward: {d}", a["per_domain"].get(d, {}).get("average_reward"),
           b["per_domain"].get(d, {}).get("average_reward"))
          for d in sorted(set(a["per_domain"]) | set(b["per_domain"]))],
        ("cost (USD)", a["cost_usd"]["total"], b["cost_usd"]["total"]),
    ]  # fmt: skip
    for name, x, y in rows:
        if name == "cost (USD)":
            table.add_row(name, _usd(x), _usd(y), _delta(x, y))
        else:
            table.add_row(name, _number(x), _number(y), _delta(x, y))
    console.print(table)
    if not paired["common"]:
        console.print("the runs share no task: no paired comparison")
        return
    low, high = paired["difference_ci95"]
    p = paired["p_value"]
    console.print(
        f"on the {paired['common']:,} tasks both ran: {names[1]} better on {paired['better']:,}, "
        f"worse on {paired['worse']:,}, equal on {paired['equal']:,}; mean reward "
        f"{paired['mean_a']:.3f} -> {paired['mean_b']:.3f} (difference {paired['mean_difference']:+.3f}, "
        f"95% CI {low:+.3f} to {high:+.3f}); paired permutation test "
        + ("p < 0.0001" if p < 0.0001 else f"p = {p:.4f}"),
        soft_wrap=True,
    )
