"""The report: one self-contained HTML file (inline CSS and script, no network) for a trees or eval run file.

The items (trees or conversations) travel as one JSON blob of pre-escaped HTML fragments; the page's script
lists them, filters the list by task id and puts the chosen one on screen, so a file of hundreds of trees
opens quickly (the browser lays out one item at a time). A Content-Security-Policy forbids every request and
every script but the page's own, so even a fragment that escaped escaping could neither run nor call home.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from josh.errors import JoshError
from josh.runner.summary import summarize
from josh.types import clean_text
from josh.view.run_html import failed_first, is_failed, render_rollout
from josh.view.source import ViewSource, load_source
from josh.view.text import esc
from josh.view.tree_html import GOLDEN, PRUNED, render_tree, system_prompt_html, tree_shape


def script_json(value: Any) -> str:
    """JSON text that can sit inside a <script> element: `</` (which could close it) is written `<\\/`, and
    `<!--` (which could make the parser miss the closing tag) `\\u003c!--`; both read back the same."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return text.replace("<!--", "\\u003c!--").replace("</", "<\\/")


def _asset(name: str) -> str:
    return (resources.files("josh.view") / "assets" / name).read_text(encoding="utf-8")


def _tone(reward: float | None, error: bool) -> str:
    if error or reward is None:
        return "error"
    return "full" if reward >= 1.0 else "zero" if reward <= 0.0 else "part"


def _badge(reward: float | None) -> str:
    return "error" if reward is None else f"{reward:.2f}"


def _count(n: int, thing: str) -> str:
    return f"{n:,} {thing}" + ("" if n == 1 else "s")


def _key(task_id: str, trial: int) -> str:
    return f"{task_id}/{trial}"


def _tree_items(source: ViewSource) -> tuple[list[dict[str, Any]], list[str], dict[str, Any]]:
    prompts: dict[str, int] = {}
    items = []
    nodes = golden_paths = 0
    rewards = []
    for tree in source.trees:
        shape = tree_shape(tree.nodes)
        counts = shape.counts()
        nodes += len(shape.nodes)
        golden_paths += counts[GOLDEN] > 0
        rewards.append(tree.reward or 0.0)
        prompt = prompts.setdefault(tree.system_prompt, len(prompts)) if tree.system_prompt else None
        items.append(
            {
                "key": _key(tree.task_id, tree.trial),
                "task": clean_text(tree.task_id),
                "label": clean_text(tree.task_id) + (f" · {tree.trial}" if tree.trial else ""),
                "badge": _badge(tree.reward),
                "tone": _tone(tree.reward, tree.status != "success"),
                "meta": f"{len(shape.nodes)} nodes · {counts[GOLDEN]} golden · {counts[PRUNED]} pruned",
                "prompt": prompt,
                "html": render_tree(tree),
            }
        )
    stats = {
        "trees": len(source.trees),
        "nodes": nodes,
        "with a golden path": golden_paths,
        "average reward": f"{sum(rewards) / len(rewards):.3f}" if rewards else "n/a",
        "at reward 1.0": sum(r >= 1.0 for r in rewards),
    }
    return items, [system_prompt_html(p) for p in prompts], stats


def _run_items(source: ViewSource) -> tuple[list[dict[str, Any]], list[str], dict[str, Any]]:
    items = []
    for rollout in failed_first(source.rollouts):
        items.append(
            {
                "key": _key(rollout.task_id, rollout.trial),
                "task": clean_text(rollout.task_id),
                "label": clean_text(rollout.task_id) + (f" · {rollout.trial}" if rollout.trial else ""),
                "badge": _badge(rollout.reward),
                "tone": _tone(rollout.reward, rollout.status != "success"),
                "meta": f"{rollout.termination} · {len(rollout.calls)} calls"
                + (f" · {_count(len(rollout.failed_goals), 'goal')} failed" if rollout.failed_goals else ""),
                "failed": is_failed(rollout),
                "html": render_rollout(rollout),
            }
        )
    summary = summarize(r.model_dump(mode="json") for r in source.rollouts)
    stats = {
        "conversations": summary["records"],
        "failed": sum(item["failed"] for item in items),
        "errors": summary["errors"],
        "average reward": f"{summary['average_reward']:.3f}" if items else "n/a",
        "100% success rate": f"{summary['success_rate']:.3f}" if items else "n/a",
    }
    return items, [], stats


def _settings(header: dict[str, Any]) -> list[str]:
    config = header.get("config") if isinstance(header.get("config"), dict) else {}
    dry_run = "model" in config and config["model"] is None  # no --model: josh's scripted mock
    shown = ["dry run on the scripted mock"] if dry_run else []
    for name in ("model", "agent", "user", "user-model", "prompts", "split", "beam", "temperature"):
        if config.get(name) is not None:
            shown.append(f"{name} {config[name]}")
    for name in ("started_at", "josh_version", "git_commit"):
        if header.get(name):
            shown.append(f"{name.replace('_', ' ')} {header[name]}")
    return shown


def render_page(source: ViewSource) -> str:
    """The whole report for a loaded run file, as one HTML document."""
    if source.kind == "trees":
        items, prompts, stats = _tree_items(source)
        what = "trees"
    else:
        items, prompts, stats = _run_items(source)
        what = "conversations (failed ones first)"
    warnings = [f"line {n}: {why}" for n, why in source.damaged]
    warnings += [f"{s.task_id}: not shown ({s.reason})" for s in source.skipped]
    name = source.path.name
    script = _asset("report.js")
    digest = base64.b64encode(hashlib.sha256(script.encode("utf-8")).digest()).decode()
    policy = f"default-src 'none'; style-src 'unsafe-inline'; script-src 'sha256-{digest}'; img-src data:"
    payload = {"kind": source.kind, "items": items, "prompts": prompts}
    data = script_json(payload)
    command = source.header.get("command") or "?"
    summary = " · ".join(f"{esc(k)} <b>{esc(v)}</b>" for k, v in stats.items())
    warning_html = ""
    if warnings:
        listed = "".join(f"<li>{esc(w)}</li>" for w in warnings[:50])
        more = f"<li>and {len(warnings) - 50} more</li>" if len(warnings) > 50 else ""
        warning_html = (
            f'<details class="warn"><summary>{len(warnings)} line(s) of the file could not be shown'
            f"</summary><ul>{listed}{more}</ul></details>"
        )
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{policy}">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>josh view · {esc(name)}</title>
<style>{_asset("report.css")}</style>
</head><body class="kind-{source.kind}">
<header class="top"><h1>josh view <span>{esc(name)}</span></h1>
<p class="facts">josh {esc(command)} · {esc(" · ".join(_settings(source.header)))}</p>
<p class="facts">{summary}</p>{warning_html}</header>
<div class="layout">
<nav class="side"><input id="search" type="search" placeholder="task id…" aria-label="filter by task id"
 autocomplete="off" spellcheck="false"><p id="shown" class="shown"></p>
<p class="what">{esc(what)}</p><ol id="list" class="list"></ol></nav>
<main id="main"><noscript>This report needs JavaScript to show its {esc(what)}.</noscript>
<p class="empty">{"no " + esc(what) + " in this file yet" if not items else ""}</p></main>
</div>
<script type="application/json" id="josh-data">{data}</script>
<script>{script}</script>
</body></html>
"""
    return clean_text(page)


@dataclass
class ReportWritten:
    """What `write_report` wrote: the file, its kind, how many items it shows, and its size in bytes."""

    path: Path
    kind: str
    items: int
    bytes: int
    left_out: int  # damaged lines and records that could not be shown


def write_report(run_file: Path, out: Path) -> ReportWritten:
    """Read a trees or eval run file and write its report to `out`. JoshError when the run file cannot be
    read or the report cannot be written."""
    if out.exists() and out.resolve() == run_file.resolve():
        raise JoshError(f"{out} is the run file itself; choose another --out")
    if out.is_dir():
        raise JoshError(f"cannot write the report {out}: it is a folder; choose another --out")
    source = load_source(run_file)
    page = render_page(source).encode("utf-8")
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(page)
        tmp.replace(out)  # a reader never sees half a report
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise JoshError(
            f"cannot write the report {out}: {exc.strerror or exc}; choose another --out"
        ) from None
    return ReportWritten(out, source.kind, source.count, len(page), len(source.damaged) + len(source.skipped))
