"""Benchmark: how many GRPO groups carry a learning signal, from JOSH trees vs flat sampling of the same budget.

A policy-gradient group learns only when its members' rewards differ (with equal rewards every advantage is
0). GRPO as trainers run it samples N independent conversations per task and groups them per task: on a task
the model always solves, or always fails, the group is flat. JOSH's trees branch from shared prefixes, and
`josh export grpo` makes a group of every branching point.

Both sides run the same dry run (the scripted mock's oracle agent, which gets a goal call's argument wrong at
`--mistake-rate`, so some conversations fail), on the same `--tasks` ToolWOZ train tasks:

- JOSH: `josh harvest toolwoz --beam B`, then `josh export grpo`: its groups, the groups whose rewards differ,
  the tasks with at least one such group, and the rows (sibling turns) that carry a non-zero advantage;
- flat: `josh harvest toolwoz --beam 1 --trials --flat-max` (beam 1 never branches: each tree is one sampled
  conversation, trial t with seed + t); for each task, the first trials whose agent replies together stay
  within what that task's JOSH tree spent (its agent model calls, each counted `n` times for the replies
  it sampled): the same budget on the same task. A task's group is those conversations; its rewards are
  the conversations' scores (goals met over goal calls).

Run: python bench/grpo_groups.py [--tasks 20] [--mistake-rate 0.3] [--beam 8] [--user goal] [--flat-max 16]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Any


def josh(*args: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "josh.cli.main", *args], capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"josh {' '.join(args)} failed:\n{proc.stderr[-2000:]}")


def trees(path: Path) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in path.read_text().splitlines()[1:]]
    return [line for line in lines if "nodes" in line]


def agent_replies(tree: dict[str, Any]) -> int:
    """The agent replies a tree's model calls sampled (a call with n choices samples n)."""
    return sum(int(call.get("n") or 1) for call in tree["model_calls"] if call.get("role") == "agent")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=20)
    parser.add_argument("--mistake-rate", type=float, default=0.3)
    parser.add_argument("--beam", type=int, default=8)
    parser.add_argument("--user", default="goal", help="the mock's customer: goal (its script) or replay")
    parser.add_argument("--flat-max", type=int, default=16, help="flat conversations drawn per task at most")
    args = parser.parse_args()
    common = ["--limit", str(args.tasks), "--mock-mistake-rate", str(args.mistake_rate), "--user", args.user]
    with tempfile.TemporaryDirectory() as folder:
        where = Path(folder)
        josh("harvest", "toolwoz", *common, "--beam", str(args.beam), "--out", str(where / "josh.jsonl"))
        josh("export", "grpo", str(where / "josh.jsonl"), "-o", str(where / "grpo"))
        josh("harvest", "toolwoz", *common, "--beam", "1", "--trials", str(args.flat_max),
             "--out", str(where / "flat.jsonl"))  # fmt: skip
        josh_trees, flat_trees = trees(where / "josh.jsonl"), trees(where / "flat.jsonl")
        rows = [json.loads(line) for line in (where / "grpo" / "train.jsonl").read_text().splitlines()]

    budget = {t["task_id"]: agent_replies(t) for t in josh_trees}
    groups: dict[str, list[float]] = defaultdict(list)
    group_task: dict[str, str] = {}
    for row in rows:
        groups[row["group_id"]].append(row["reward"])
        group_task[row["group_id"]] = row["task_id"]
    varied = {g for g, rewards in groups.items() if len(set(rewards)) > 1}
    signal_rows = sum(1 for row in rows if abs(row["advantage"]) > 1e-12)

    by_task: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for tree in sorted(flat_trees, key=lambda t: t["trial"]):
        by_task[tree["task_id"]].append(tree)
    flat_groups: dict[str, list[float]] = {}
    flat_spent = 0
    short = 0
    for task, samples in by_task.items():
        chosen, spent = [], 0
        for tree in samples:
            if spent + agent_replies(tree) > budget[task]:
                break
            chosen.append(tree["reward"] or 0.0)
            spent += agent_replies(tree)
        short += len(chosen) == len(samples)  # --flat-max ran out before the budget did
        flat_groups[task], flat_spent = chosen, flat_spent + spent
    flat_varied = [t for t, rewards in flat_groups.items() if len(set(rewards)) > 1]
    flat_signal = sum(len(flat_groups[t]) for t in flat_varied)

    spent = sum(budget.values())
    print(f"{args.tasks} ToolWOZ train tasks, the scripted mock (mistake rate {args.mistake_rate}, customer "
          f"{args.user}); budget = agent replies sampled (a call with n choices counts n)")  # fmt: skip
    print(f"JOSH (beam {args.beam}): {spent} agent replies; {len(groups)} groups, {len(varied)} with reward "
          f"variance; {len({group_task[g] for g in varied})} of {len(budget)} tasks with at least one; "
          f"{signal_rows} of {len(rows)} rows with a non-zero advantage")  # fmt: skip
    sizes = [len(r) for r in flat_groups.values()]
    print(f"flat (N conversations per task within that task's JOSH budget; N from {min(sizes)} to {max(sizes)},"
          f" mean {sum(sizes) / len(sizes):.1f}): {flat_spent} agent replies; {len(flat_groups)} groups (one a "
          f"task), {len(flat_varied)} with reward variance; {flat_signal} of {sum(sizes)} conversations with a "
          f"non-zero advantage" + (f" ({short} tasks hit --flat-max)" if short else ""))  # fmt: skip


if __name__ == "__main__":
    main()
