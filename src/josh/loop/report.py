"""The loop's report: before/after average reward and 100% success rate per domain, every round.

Numbers are counted as `josh eval` counts them (a conversation that ended in an error scores 0; a task's
value is its mean over trials). Each value has a 95% bootstrap interval over tasks; each trained round is
compared with the base model on the tasks both ran by a paired permutation test (two-sided) with a paired
bootstrap interval of the difference, the same test as `josh report A B`. A task with goal calls in two
domains counts in both, as in the eval summary.
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from josh.errors import JoshError
from josh.loop.diagnostics import protocol_following
from josh.runner.compare import permutation_p_value
from josh.runner.summary import bootstrap_ci, latest_by_key, record_reward

ALL = "all"
METRICS = {"average_reward": "average reward", "success_rate": "100% success rate"}


@dataclass
class RoundRun:
    """One round's evaluation: its number, its model and its records."""

    round: int
    model: str
    records: list[dict[str, Any]]
    run_file: str


def _domains(record: dict[str, Any]) -> set[str]:
    return {name.split("_", 1)[-1] for name in record.get("goal_calls", [])}


def task_values(records: Iterable[dict[str, Any]]) -> dict[str, dict[str, dict[str, float]]]:
    """domain (and "all") -> task -> {"average_reward", "success_rate"}: the task's means over its trials."""
    rewards: dict[str, list[float]] = defaultdict(list)
    domains: dict[str, set[str]] = {}
    for record in latest_by_key(records):
        rewards[record["task_id"]].append(record_reward(record))
        domains.setdefault(record["task_id"], set()).update(_domains(record))
    values: dict[str, dict[str, dict[str, float]]] = defaultdict(dict)
    for task, trial_rewards in rewards.items():
        entry = {
            "average_reward": sum(trial_rewards) / len(trial_rewards),
            "success_rate": sum(r == 1.0 for r in trial_rewards) / len(trial_rewards),
        }
        for domain in (ALL, *sorted(domains[task])):
            values[domain][task] = entry
    return dict(values)


def round_metrics(records: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per domain (and "all"): tasks, then each metric with its 95% bootstrap interval."""
    result: dict[str, dict[str, Any]] = {}
    for domain, tasks in sorted(task_values(records).items(), key=lambda item: (item[0] != ALL, item[0])):
        entry: dict[str, Any] = {"tasks": len(tasks)}
        for metric in METRICS:
            values = [v[metric] for v in tasks.values()]
            entry[metric] = sum(values) / len(values)
            entry[f"{metric}_ci95"] = list(bootstrap_ci(values))
        result[domain] = entry
    return result


def paired(base: Iterable[dict[str, Any]], trained: Iterable[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per domain: the trained model minus the base on the tasks both ran, with p-value and interval."""
    before, after = task_values(base), task_values(trained)
    result: dict[str, dict[str, Any]] = {}
    for domain in sorted(set(before) & set(after), key=lambda d: (d != ALL, d)):
        shared = sorted(set(before[domain]) & set(after[domain]))
        entry: dict[str, Any] = {"tasks": len(shared)}
        for metric in METRICS:
            differences = [after[domain][t][metric] - before[domain][t][metric] for t in shared]
            entry[f"{metric}_difference"] = sum(differences) / len(differences) if differences else None
            entry[f"{metric}_difference_ci95"] = list(bootstrap_ci(differences)) if differences else None
            entry[f"{metric}_p_value"] = permutation_p_value(differences) if differences else None
        result[domain] = entry
    return result


def build_report(
    model: str,
    method: str,
    runs: Sequence[RoundRun],
    details: Sequence[dict[str, Any]] = (),
    wall_s: dict[str, float] | None = None,
) -> dict[str, Any]:
    """The report's data (what report.json holds). `details`: what each round did (`round_details`);
    `wall_s`: each stage's wall time by its name."""
    base = runs[0]
    report = {
        "model": model,
        "method": method,
        "rounds": [
            {"round": run.round, "model": run.model, "run_file": run.run_file, "metrics": round_metrics(run.records),
             "protocol": protocol_following(run.records)}
            for run in runs
        ],
        "compared_with_base": {
            str(run.round): paired(base.records, run.records) for run in runs if run.round != base.round
        },
        "test": "paired permutation test (two-sided) over per-task values; 95% bootstrap intervals over tasks",
        "training": list(details),
        "wall_s": dict(wall_s or {}),
    }
    report["verdict"] = verdict(report)
    return report


SIGNIFICANT = 0.05


def verdict(report: dict[str, Any]) -> str:
    """A plain answer to "did training do anything?": the significant changes against the base model (or
    that there were none), then what the last round's training did to its loss and its adapter."""
    changes = []
    for round_, domains in sorted(report["compared_with_base"].items(), key=lambda item: int(item[0])):
        for domain, entry in domains.items():
            for metric, label in METRICS.items():
                p_value = entry.get(f"{metric}_p_value")
                if p_value is not None and p_value < SIGNIFICANT:
                    difference = entry[f"{metric}_difference"]
                    changes.append(f"round {round_}, {domain}: {label} {difference:+.3f} (p {p_value:.3g})")
    if not report["compared_with_base"]:
        sentences = ["No trained round was evaluated yet."]
    elif changes:
        sentences = ["Significant changes against the base model (p < 0.05): " + "; ".join(changes) + "."]
    else:
        sentences = [
            "Nothing changed significantly: no trained round differs from the base model at p < 0.05 in any "
            "domain, on either metric."
        ]
    first, last = report["rounds"][0].get("protocol") or {}, report["rounds"][-1].get("protocol") or {}
    if len(report["rounds"]) > 1 and first.get("share") is not None and last.get("share") is not None:
        sentences.append(
            f"Agent replies that follow the protocol: {first['share']:.1%} of {first['replies']} in round "
            f"{report['rounds'][0]['round']}, {last['share']:.1%} of {last['replies']} in round "
            f"{report['rounds'][-1]['round']}."
        )
    trained = [d for d in report.get("training", []) if d.get("train")]
    if trained:
        last = trained[-1]
        losses, adapter = last["train"]["losses"], last.get("adapter") or {}
        words = f"Round {last['round']}'s training ran {last['train'].get('steps') or 0} step(s)"
        if losses:
            words += f"; its loss went from {losses[0]:.4g} to {losses[-1]:.4g}"
        if "update_norm" in adapter:
            words += f"; its adapter changes the weights by {adapter['update_norm']:.4g} (Frobenius norm)"
            if "moved" in adapter:
                words += f", {adapter['moved']:.4g} of it this round"
        sentences.append(words + ".")
    return " ".join(sentences)


def wall_line(report: dict[str, Any]) -> str:
    """The loop's whole wall time, stage by stage."""
    wall = report["wall_s"]
    return f"Wall time of every stage together: {sum(wall.values()):.0f} s (" + ", ".join(
        f"{stage} {seconds:.0f} s" for stage, seconds in wall.items()
    ) + ")."


def training_rows(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """What each trained round did: harvest yield, examples, loss, adapter, tokens and cost, wall times."""
    header = [
        "round", "trees (golden / perfect)", "avg tree reward", "examples", "steps", "loss first -> last",
        "adapter update (this round)", "tokens", "cost USD", "wall s (harvest / export / train / eval)",
    ]  # fmt: skip
    wall = report.get("wall_s", {})
    rows = []
    for entry in report.get("training", []):
        if entry["round"] == 0:
            continue
        harvest, export, train = entry.get("harvest") or {}, entry.get("export") or {}, entry.get("train") or {}
        adapter, evaluation = entry.get("adapter") or {}, entry.get("eval") or {}
        losses = train.get("losses") or []
        counts = ", ".join(f"{k} {v}" for k, v in (export.get("counts") or {}).items() if k != "examples")
        cost = [c for c in (harvest.get("cost_usd"), evaluation.get("cost_usd")) if c is not None]
        times = [wall.get(f"round {entry['round']}: {kind}") for kind in ("harvest", "export", "train", "eval")]
        rows.append([
            str(entry["round"]),
            f"{harvest.get('trees', 'n/a')} ({harvest.get('with_golden_path', 'n/a')} / {harvest.get('perfect', 'n/a')})",
            "n/a" if harvest.get("average_tree_reward") is None else f"{harvest['average_tree_reward']:.3f}",
            f"{export.get('examples', 'n/a')}" + (f" ({counts})" if counts else ""),
            str(train.get("steps", "n/a")),
            f"{losses[0]:.4g} -> {losses[-1]:.4g}" if losses else "n/a",
            "n/a" if "update_norm" not in adapter
            else f"{adapter['update_norm']:.4g}" + (f" ({adapter['moved']:.4g})" if "moved" in adapter else ""),
            f"{harvest.get('tokens', 0) + evaluation.get('tokens', 0):,}",
            f"{sum(cost):.2f}" if cost else "n/a",
            " / ".join("n/a" if t is None else f"{t:.0f}" for t in times),
        ])  # fmt: skip
    return header, rows


def _ci(values: Sequence[float] | None) -> str:
    return f"[{values[0]:.3f}, {values[1]:.3f}]" if values else "n/a"


def _p(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3g}"


def _signed(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.3f}"


def table_rows(report: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    """The headline table, base model against the last round: one row per domain."""
    first, last = report["rounds"][0], report["rounds"][-1]
    compared = report["compared_with_base"].get(str(last["round"]), {})
    header = ["domain", "tasks"]
    for label in METRICS.values():
        header += [f"{label}, round {first['round']}", f"{label}, round {last['round']}", "difference (p)"]
    rows = []
    for domain, before in first["metrics"].items():
        after = last["metrics"].get(domain)
        diff = compared.get(domain, {})
        row = [domain, str(before["tasks"])]
        for metric in METRICS:
            row.append(f"{before[metric]:.3f} {_ci(before[f'{metric}_ci95'])}")
            row.append(f"{after[metric]:.3f} {_ci(after[f'{metric}_ci95'])}" if after else "n/a")
            row.append(f"{_signed(diff.get(f'{metric}_difference'))} (p {_p(diff.get(f'{metric}_p_value'))})")
        rows.append(row)
    return header, rows


ROUND_HEADER = ["round", "model", "tasks", "average reward", "100% success rate", "replies following the protocol"]


def round_rows(report: dict[str, Any]) -> list[list[str]]:
    """Every round's overall numbers, and the share of the agent's replies that follow its protocol."""
    rows = []
    for entry in report["rounds"]:
        overall, protocol = entry["metrics"].get(ALL), entry.get("protocol") or {}
        if not overall:
            continue
        share = protocol.get("share")
        rows.append([
            str(entry["round"]), entry["model"], str(overall["tasks"]),
            f"{overall['average_reward']:.3f} {_ci(overall['average_reward_ci95'])}",
            f"{overall['success_rate']:.3f} {_ci(overall['success_rate_ci95'])}",
            "n/a" if share is None else f"{share:.1%} ({protocol['following']} of {protocol['replies']})",
        ])  # fmt: skip
    return rows


def markdown(report: dict[str, Any]) -> str:
    """report.md: the table, then every round's overall numbers."""
    header, rows = table_rows(report)
    lines = [
        f"# Self-training loop: {report['model']} ({report['method']})",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
        *("| " + " | ".join(row) + " |" for row in rows),
        "",
        "| " + " | ".join(ROUND_HEADER) + " |",
        "|" + "|".join("---" for _ in ROUND_HEADER) + "|",
        *("| " + " | ".join(row) + " |" for row in round_rows(report)),
    ]
    lines += ["", f"{report['test']}. Errors count as reward 0.", "", f"**{report['verdict']}**", ""]
    header, rows = training_rows(report)
    if rows:
        lines += [
            "## What each round did",
            "",
            "| " + " | ".join(header) + " |",
            "|" + "|".join("---" for _ in header) + "|",
            *("| " + " | ".join(row) + " |" for row in rows),
            "",
            "Tokens and cost: the round's harvest and evaluation. The adapter update is the Frobenius norm of "
            "the LoRA update of every adapted weight; in brackets, the part this round added to the previous "
            "round's adapter.",
            "",
        ]
    if report.get("wall_s"):
        lines += [wall_line(report), ""]
    return "\n".join(lines)


def plot_png(report: dict[str, Any]) -> bytes:
    """Panels: average reward and 100% success rate (a line per domain across rounds, 95% intervals), the
    share of the agent's replies that follow its protocol, and each round's training loss curve."""
    try:
        import matplotlib
    except ImportError:
        raise JoshError("the loop's plot needs matplotlib: pip install 'josh-toolkit[train]'") from None
    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    rounds = [entry["round"] for entry in report["rounds"]]
    domains = list(report["rounds"][0]["metrics"])
    curves = [(d["round"], d["train"]["losses"]) for d in report.get("training", []) if (d.get("train") or {}).get("losses")]
    shares = [(r["round"], (r.get("protocol") or {}).get("share")) for r in report["rounds"]]
    shares = [(x, y) for x, y in shares if y is not None]
    figure, axes = plt.subplots(1, 2 + bool(shares) + bool(curves), figsize=(5.5 * (2 + bool(shares) + bool(curves)), 4.2))
    extra = list(axes[2:])
    if shares:
        axis = extra.pop(0)
        axis.plot([x for x, _ in shares], [y for _, y in shares], marker="o", color="black")
        axis.set_title("agent replies that follow the protocol")
        axis.set_xlabel("round (0 = before training)")
        axis.set_xticks(rounds)
        axis.set_ylim(-0.02, 1.02)
        axis.grid(alpha=0.3)
    if curves:
        axis = extra.pop(0)
        for round_, losses in curves:
            axis.plot(range(1, len(losses) + 1), losses, marker="o", markersize=3, label=f"round {round_}")
        axis.set_title("training loss")
        axis.set_xlabel("logging point (every --logging-steps optimiser steps)")
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8, loc="best")
    for axis, (metric, label) in zip(axes, METRICS.items(), strict=False):
        for index, domain in enumerate(domains):
            points = [(r["round"], r["metrics"][domain]) for r in report["rounds"] if domain in r["metrics"]]
            xs = [x + (index - len(domains) / 2) * 0.02 for x, _ in points]  # keep error bars apart
            ys = [m[metric] for _, m in points]
            low = [y - m[f"{metric}_ci95"][0] for y, (_, m) in zip(ys, points, strict=True)]
            high = [m[f"{metric}_ci95"][1] - y for y, (_, m) in zip(ys, points, strict=True)]
            axis.errorbar(
                xs, ys, yerr=[low, high], marker="o", capsize=3, label=domain,
                linewidth=2.5 if domain == ALL else 1.2, color="black" if domain == ALL else None,
            )  # fmt: skip
        axis.set_title(label)
        axis.set_xlabel("round (0 = before training)")
        axis.set_xticks(rounds)
        axis.set_ylim(-0.02, 1.02)
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=8, loc="best")
    figure.suptitle(f"{report['model']}: {report['method']} self-training, 95% bootstrap intervals", fontsize=10)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110)
    plt.close(figure)
    return buffer.getvalue()


def html_page(report: dict[str, Any], png: bytes, viewer_links: dict[int, str]) -> str:
    """report.html: one self-contained page (no network) with the table, the plot and each round's viewer."""
    header, rows = table_rows(report)
    esc = html.escape
    table = "<table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header) + "</tr>"
    table += "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows) + "</table>"
    links = "".join(
        f'<li>round {r}: <a href="{esc(href)}">conversations</a> ({esc(report["rounds"][i]["model"])})</li>'
        for i, (r, href) in enumerate(sorted(viewer_links.items()))
    )
    table += "<h2>Every round</h2><table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in ROUND_HEADER) + "</tr>"
    table += "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in round_rows(report))
    table += "</table>"
    header, rows = training_rows(report)
    details = ""
    if rows:
        details = "<h2>What each round did</h2><table><tr>" + "".join(f"<th>{esc(h)}</th>" for h in header)
        details += "</tr>" + "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
        details += "</table>"
    if report.get("wall_s"):
        details += f"<p>{esc(wall_line(report))}</p>"
    image = base64.b64encode(png).decode("ascii")
    return f"""<!doctype html>
<html><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; img-src data:; style-src 'unsafe-inline'">
<title>josh loop: {esc(report["model"])}</title>
<style>body{{font:14px system-ui,sans-serif;margin:2em;max-width:1200px}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}td:first-child,th:first-child{{text-align:left}}
img{{max-width:100%}}</style></head><body>
<h1>Self-training loop: {esc(report["model"])} ({esc(report["method"])})</h1>
{table}
<p>{esc(report["test"])}. Errors count as reward 0.</p>
<p><b>{esc(report["verdict"])}</b></p>
{details}
<img alt="average reward and 100% success rate per domain, every round" src="data:image/png;base64,{image}">
<h2>Conversations</h2><ul>{links}</ul>
</body></html>
"""


def write_report(out: Path, report: dict[str, Any], viewer_links: dict[int, str]) -> list[Path]:
    """report.json, report.md, report.png and report.html in `out`; returns their paths."""
    png = plot_png(report)
    files = {
        "report.json": json.dumps(report, indent=2) + "\n",
        "report.md": markdown(report),
        "report.html": html_page(report, png, viewer_links),
    }
    written = []
    for name, text in files.items():
        (out / name).write_text(text, encoding="utf-8")
        written.append(out / name)
    (out / "report.png").write_bytes(png)
    written.append(out / "report.png")
    return written


# -- two loops side by side (`josh report LOOP_A LOOP_B`) -----------------------------------------------------


def read_loop_report(folder: Path) -> dict[str, Any]:
    """A loop folder's report.json; JoshError when the folder holds none (the loop has not finished)."""
    try:
        data = json.loads((folder / "report.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("rounds"), list) or not data["rounds"]:
        raise JoshError(
            f"{folder} is a folder without a loop report (report.json): name a `josh loop` folder whose loop "
            "has finished (the same `josh loop CONFIG` writes it), or a run file"
        )
    return data


LOOP_ROWS = {
    "average reward": lambda entry, detail: (entry["metrics"].get(ALL) or {}).get("average_reward"),
    "100% success rate": lambda entry, detail: (entry["metrics"].get(ALL) or {}).get("success_rate"),
    "harvest agent + customer model calls": lambda entry, detail: (detail.get("harvest") or {}).get(
        "model_calls"
    ),
    "harvest trees at reward 1.0": lambda entry, detail: (detail.get("harvest") or {}).get("perfect"),
    "training examples": lambda entry, detail: (detail.get("export") or {}).get("examples"),
}


def loop_rows(reports: Sequence[dict[str, Any]]) -> list[list[str]]:
    """Every round of each loop side by side, a row per round and measure: the evaluation's average reward
    and 100% success rate, what the round's harvest (or RFT's sampling) spent and kept, the examples trained
    on. "n/a" where a loop has no such round or measure (round 0 trains nothing)."""
    rounds = sorted({entry["round"] for report in reports for entry in report["rounds"]})
    rows = []
    for round_ in rounds:
        for name, measure in LOOP_ROWS.items():
            if round_ == 0 and name not in ("average reward", "100% success rate"):
                continue
            cells = []
            for report in reports:
                entry = next((e for e in report["rounds"] if e["round"] == round_), None)
                detail = next((d for d in report.get("training", []) if d.get("round") == round_), {})
                value = None if entry is None else measure(entry, detail)
                if value is None:
                    cells.append("n/a")
                else:
                    cells.append(f"{value:.3f}" if isinstance(value, float) else f"{value:,}")
            rows.append([str(round_), name, *cells])
    return rows
