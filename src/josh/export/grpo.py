"""Grouped rollouts for policy-gradient trainers (GRPO and kin): a tree's sibling turns from one shared prefix.

A JOSH tree branches where several leaves continue one conversation: every node with two or more children is
a branching point, and its children are the sibling continuations of one prefix. Each branching point gives
one group, one row per sibling:

- `prompt`: the system prompt and every message on the path from the root to the branching point (the
  shared prefix, ending on the customer's message the siblings answer);
- `completion`: the sibling's agent turn from that prefix (its replies and the tool results answering them,
  up to the customer's next message);
- `reward`: the goals met later on that branch, at best: the most goals met on a path from the sibling down
  to a leaf of its subtree (the sibling's own turns included), over the task's goal calls; a search prunes
  the siblings of a rewarded leaf, so this is what the branch reached, not what it might have;
- `advantage`: the sibling's reward minus its group's mean reward (no division by the spread: a trainer
  that normalises by the standard deviation, as GRPO does, can from `reward`).

A sibling whose turn holds one of the agent's stand-ins for a failed reply (no model output) is left out,
and a group left with fewer than two siblings gives no rows.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable

from josh.export.examples import ExportResult, origin, system_messages
from josh.export.messages import OpenAIForms, is_customer, is_stand_in
from josh.export.trees import HarvestedTree
from josh.search import NodeRecord
from josh.types import Message


def best_rewards(tree: HarvestedTree) -> dict[int, int]:
    """Each node's best count of goals met on a path from it (its own turns included) down to a leaf."""
    children = tree.children()
    best: dict[int, int] = {}
    for node in reversed(tree.record.nodes):  # children come after their parent: leaves first
        below = max((best[c.id] for c in children[node.id]), default=0)
        best[node.id] = len(node.reward_events) + below
    return best


def agent_turn(node: NodeRecord) -> list[Message]:
    """A node's first agent turn: its messages up to the customer's first message."""
    turn: list[Message] = []
    for message in node.messages:
        if is_customer(message):
            break
        turn.append(message)
    return turn


def grpo_groups(trees: Iterable[HarvestedTree]) -> ExportResult:
    """One group per branching point of every tree: its siblings' turns, rewards and advantages."""
    result = ExportResult("grpo", "josh")
    for tree in trees:
        goals = len(tree.record.goal_calls)
        if not goals:
            result.skipped_trees["no goal calls (no reward to compare)"] += 1
            continue
        children = tree.children()
        points = [n for n in tree.record.nodes if len(children[n.id]) >= 2]
        if not points:
            result.skipped_trees["no branching point (a harvest with --beam 1 never branches)"] += 1
            continue
        best, system, forms = best_rewards(tree), system_messages(tree), OpenAIForms()
        for point in points:
            prefix = [m for n in tree.node_path(point) for m in n.messages]
            siblings = []
            for child in children[point.id]:
                turn = agent_turn(child)
                if not turn or any(is_stand_in(m) for m in turn):
                    why = "siblings left out: no model reply (a failed reply's stand-in, or none)"
                    result.dropped[why] += 1
                    continue
                siblings.append((child, turn, best[child.id] / goals))
            if len(siblings) < 2:
                result.dropped["groups left out: fewer than two siblings with a model reply"] += 1
                continue
            mean = statistics.fmean(reward for _, _, reward in siblings)
            prompt = system + [forms(m) for m in prefix]
            group_id = f"{origin(tree)}/{point.id}"
            for child, turn, reward in siblings:
                row = {
                    "group_id": group_id,
                    "task_id": tree.record.task_id,
                    "trial": tree.record.trial,
                    "node": child.id,
                    "prompt": prompt,
                    "completion": [forms(m) for m in turn],
                    "tools": tree.record.tools,
                    "reward": reward,
                    "advantage": reward - mean,
                }
                result.add(row, origin(tree))
    return result
