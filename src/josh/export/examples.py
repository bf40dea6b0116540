"""Training examples from trees, josh's selection: SFT conversations, KTO model calls, DPO sibling pairs.

- SFT `{"messages", "tools"}`: per tree that reached reward 1.0, its golden path (the first root to the
  last golden node) after the system prompt, with every protocol error dropped (`messages.protocol_error`:
  the faulty reply and the tool results answering it go; the rest of the turn stays), ending on the
  agent's last reply.
- KTO `{"prompt", "completion", "label", "tools"}`: one example per model reply in the tree (every
  assistant message except the agent's stand-ins for a failed reply), prompt = the system prompt and the
  agent's view before it, completion = [the reply] (not the greeting an environment opens with, tau2's,
  which comes before the customer's first message and is fixed text); label = its node is on a successful path and the reply
  is not a protocol error (a malformed call is never desirable, as in the paper's `finetune_agent.py`).
- DPO `{"prompt", "chosen", "rejected", "tools"}`: replies to the exact same prompt (sibling branches'
  first replies), one labelled desirable and one not; each reply in at least one pair (max(#desirable,
  #undesirable) pairs a prompt); a reply that appears with both labels for one prompt is no preference
  and is left out.

`tools` is the record's tool schemas (empty for ReAct), which TRL's trainers pass to the chat template.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from josh.export.messages import (
    OpenAIForms,
    is_stand_in,
    is_tool_result,
    protocol_error,
    strict_end,
    to_openai,
)
from josh.export.trees import HarvestedTree
from josh.search import NodeRecord
from josh.types import AssistantMessage, Message

Kind = Literal["sft", "kto", "dpo", "grpo"]
Selection = Literal["josh", "reference"]
KINDS: tuple[Kind, ...] = ("sft", "kto", "dpo", "grpo")
STRICT_END_REASON = "ended its branch under strict errors (the reference crashes there)"


@dataclass
class ExportResult:
    """The examples of one export, with their counts and what was left out (reason -> count)."""

    kind: Kind
    selection: Selection
    examples: list[dict[str, Any]] = field(default_factory=list)
    origins: list[str] = field(default_factory=list)  # the tree of each example ("task_id/trial")
    skipped_trees: Counter[str] = field(default_factory=Counter)
    dropped: Counter[str] = field(default_factory=Counter)

    def add(self, example: dict[str, Any], origin: str) -> None:
        self.examples.append(example)
        self.origins.append(origin)

    @property
    def trees_used(self) -> int:
        """How many trees gave at least one example."""
        return len(set(self.origins))

    @property
    def counts(self) -> dict[str, int]:
        """Examples per kind and label: SFT examples; KTO desirable / undesirable; DPO pairs (and prompts)."""
        if self.kind == "kto":
            true = sum(1 for e in self.examples if e["label"])
            return {"label true": true, "label false": len(self.examples) - true}
        if self.kind == "dpo":
            return {"pairs": len(self.examples), "prompts": len({_key(e["prompt"]) for e in self.examples})}
        if self.kind == "grpo":
            return group_counts(self.examples)
        return {"examples": len(self.examples)}


def group_counts(rows: Sequence[dict[str, Any]]) -> dict[str, int]:
    """GRPO rows: rows, groups, and groups whose siblings' rewards differ (the ones a policy gradient learns
    from: a group whose siblings all earned the same has every advantage 0)."""
    rewards: dict[str, set[float]] = {}
    for row in rows:
        rewards.setdefault(row["group_id"], set()).add(round(row["reward"], 9))
    varied = sum(1 for values in rewards.values() if len(values) > 1)
    return {"rows": len(rows), "groups": len(rewards), "groups with reward variance": varied}


def origin(tree: HarvestedTree) -> str:
    return f"{tree.record.task_id}/{tree.record.trial}"


def system_messages(tree: HarvestedTree) -> list[dict[str, Any]]:
    prompt = tree.record.system_prompt
    return [{"role": "system", "content": prompt}] if prompt else []


def tool_names(tree: HarvestedTree) -> list[str]:
    """The names of the tools the model was given (function calling), from the record's schemas."""
    names = []
    for tool in tree.record.tools:
        function = tool.get("function") if isinstance(tool, dict) else None
        if isinstance(function, dict) and isinstance(function.get("name"), str):
            names.append(function["name"])
    return names


def golden_path(tree: HarvestedTree) -> list[NodeRecord] | None:
    """The nodes from the first root to the last golden node, or None when the golden marks are not one
    path from the root (no golden node, or golden nodes on two branches)."""
    golden = [n for n in tree.record.nodes if n.golden]
    if not golden:
        return None
    children = tree.children()
    ends = [n for n in golden if not any(c.golden for c in children[n.id])]
    if len(ends) != 1:
        return None
    path = tree.node_path(ends[0])
    return path if len(path) == len(golden) and all(n.golden for n in path) else None


def full_reward(tree: HarvestedTree) -> bool:
    return tree.record.reward is not None and abs(tree.record.reward - 1.0) < 1e-9


def sft_examples(trees: Iterable[HarvestedTree]) -> ExportResult:
    """SFT conversations: the golden path of each tree that reached reward 1.0, protocol errors dropped."""
    result = ExportResult("sft", "josh")
    for tree in trees:
        if not full_reward(tree):
            result.skipped_trees["reward below 1.0"] += 1
            continue
        path = golden_path(tree)
        if path is None:
            result.skipped_trees["no golden path from the root"] += 1
            continue
        messages: list[Message] = []
        crashes = set()
        for node in path:
            end = strict_end(node.notes, node.messages)
            if end is not None:
                crashes.add(len(messages) + end)
            messages.extend(node.messages)
        kept = without_protocol_errors(messages, tool_names(tree), result.dropped, crashes)
        while kept and not isinstance(kept[-1], AssistantMessage):
            kept.pop()
        if not kept:
            result.skipped_trees["no agent reply on the golden path"] += 1
            continue
        messages_out = system_messages(tree) + [to_openai(m) for m in kept]
        result.add({"messages": messages_out, "tools": tree.record.tools}, origin(tree))
    return result


def without_protocol_errors(
    messages: Sequence[Message], names: Sequence[str], dropped: Counter[str], crashes: Collection[int] = ()
) -> list[Message]:
    """`messages` less each protocol error and the tool results that answer it (counted in `dropped`);
    `crashes`: the indices of replies that ended their branch under strict errors."""
    kept: list[Message] = []
    skip_results = False
    for index, message in enumerate(messages):
        if skip_results and is_tool_result(message):
            continue
        skip_results = False
        why = protocol_error(messages, index, names)
        if why is None and index in crashes:
            why = STRICT_END_REASON
        if why is not None:
            dropped[f"replies dropped: {why}"] += 1
            skip_results = True
            continue
        kept.append(message)
    return kept


def kto_examples(trees: Iterable[HarvestedTree]) -> ExportResult:
    """KTO examples: every model reply in every tree, labelled by its node's successful mark."""
    result = ExportResult("kto", "josh")
    for tree in trees:
        system, names, forms = system_messages(tree), tool_names(tree), OpenAIForms()
        for node in tree.record.nodes:
            before = [m for n in tree.node_path(node)[:-1] for m in n.messages]
            view = before + list(node.messages)
            end = strict_end(node.notes, node.messages)
            crash = None if end is None else len(before) + end
            spoke = next((i for i, m in enumerate(view) if m.role == "user"), len(view))
            for index in range(len(before), len(view)):
                reply = view[index]
                if not isinstance(reply, AssistantMessage):
                    continue
                if index < spoke:  # the conversation's preamble, not a model's reply
                    result.dropped[
                        "the agent's greeting before the customer spoke (fixed text, no model output)"
                    ] += 1
                    continue
                if is_stand_in(reply):
                    result.dropped[
                        "replies that are the agent's stand-in for a failed one (no model output)"
                    ] += 1
                    continue
                error = protocol_error(view, index, names) or (STRICT_END_REASON if index == crash else None)
                label = node.successful and error is None
                example = kto_example(system, view[:index], reply, label, tree.record.tools, forms)
                result.add(example, origin(tree))
    return result


def kto_example(
    system: list[dict[str, Any]],
    prompt: Sequence[Message],
    reply: Message,
    label: bool,
    tools: list[dict[str, Any]],
    forms: Callable[[Message], dict[str, Any]] = to_openai,
) -> dict[str, Any]:
    return {
        "prompt": system + [forms(m) for m in prompt],
        "completion": [forms(reply)],
        "label": label,
        "tools": tools,
    }


def dpo_examples(trees: Iterable[HarvestedTree]) -> ExportResult:
    """DPO pairs from the KTO examples: same prompt, one reply desirable and one not."""
    return preference_pairs(kto_examples(trees), "josh")


def preference_pairs(kto: ExportResult, selection: Selection) -> ExportResult:
    """Pairs of a desirable and an undesirable reply to the exact same prompt and tools: max(#desirable,
    #undesirable) pairs a prompt, each reply in at least one (all combinations would weigh a prompt with
    many replies quadratically)."""
    result = ExportResult("dpo", selection, skipped_trees=kto.skipped_trees, dropped=Counter(kto.dropped))
    groups: dict[str, dict[str, Any]] = {}
    digests: dict[int, str] = {}  # id of a message dict (kept alive by the examples) -> digest of its JSON

    def key(messages: list[dict[str, Any]]) -> str:
        parts = []
        for message in messages:
            if id(message) not in digests:
                digests[id(message)] = _key(message)
            parts.append(digests[id(message)])
        return _key(parts)

    for example, source in zip(kto.examples, kto.origins, strict=True):
        group = groups.setdefault(
            key(example["prompt"]) + _key(example["tools"]),
            {"example": example, "origin": source, "replies": {}},
        )
        reply = group["replies"].setdefault(_key(example["completion"]), (example["completion"], set()))
        reply[1].add(example["label"])
    for group in groups.values():
        replies = group["replies"].values()
        chosen = [c for c, labels in replies if labels == {True}]
        rejected = [c for c, labels in replies if labels == {False}]
        ambiguous = sum(1 for _, labels in replies if len(labels) == 2)
        if ambiguous:
            result.dropped["replies labelled both ways for one prompt"] += ambiguous
        base = group["example"]
        for index in range(max(len(chosen), len(rejected)) if chosen and rejected else 0):
            pair = {"prompt": base["prompt"], "chosen": chosen[index % len(chosen)],
                    "rejected": rejected[index % len(rejected)], "tools": base["tools"]}  # fmt: skip
            result.add(pair, group["origin"])
    return result


def _key(value: Any) -> str:
    """A short key equal for equal JSON values (a digest: prompts are long, and there are many)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, ensure_ascii=False).encode()).hexdigest()
