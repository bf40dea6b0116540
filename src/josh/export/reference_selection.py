"""The paper's own selection of training data (josh-train 0.1.4 `finetune/`), so exports can be compared.

KTO, `finetune_agent.py` `create_training_instances` (lines 76-102), rule for rule:
- the trees in order, each tree's `training_paths` in order (line 79-80); the successful mark is the
  label, the golden mark is not used (line 80);
- an empty path is skipped (81-82); a path already seen, in any tree, is skipped (dedupe on the messages
  alone, first one wins: 83-85);
- a last user-role message is cut (86-87);
- walking back from the end, stop at the first user-role message (88-90). In the ReAct view a tool
  result (APIRETURN) is a user-role message, so only the replies after the last one are examples;
- a message starting with APIRETURN is not an example (91); for function calling, neither is a tool
  result (the same intent: a tool's output is not the model's);
- prompt = the system prompt and the messages before the reply (92), completion = the reply (94);
- label = the path's successful mark (95), and for a successful path also `clean_good_utterance` of
  the reply and the message after it (96-100; lines 59-73): no APIRETURN, "ERROR:" or "Error:" in it,
  and a reply with APICALL in it passes only when the second command found by the script's pattern is
  JSON and the message after it has no FAILURE. That pattern (line 55) is THOUGHTS/APICALL/SPEAK, an
  older prompt's: on the released trees (which say PLAN) the second command is seldom the APICALL, so
  most such replies fail. It is kept as written, so the labels are the paper's: on the released trees
  this gives exactly the examples and labels the script gives (7,060 desirable, 9,572 not).

Our own trees have no `training_paths`; `training_paths` writes the ones the reference would have recorded:
at each collapse (a reward on the golden path), every node under the root of that time as it was then (its
conversation up to that step's agent turn, last user-role messages cut, `josh.py` `get_tree` and
`trim_user_msg`), in the reference's order (each node before its children, left before right), each
(messages, marks) once. Nothing after the last reward is recorded, as in the reference.

SFT, `sft_agent_successful.py` (lines 92-115, trees at reward 1.0 only: line 54): every clean reply of the
successful conversation, each as one example holding the conversation up to and including it (113). The
script walks back through APIRETURNs to the customer's message (105) on paths snapshotted every turn; here
every reply of the golden path is taken, which is what that walk covers turn by turn. Its own APICALL check
(lines 74-82) loops over a string and throws for every APICALL; the check used is `finetune_agent.py`'s
above, which on the PLAN prompt rejects most APICALL replies all the same.

DPO: the paper has no DPO script; the pairs are made from the reference KTO examples, as josh's are.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence

from josh.export.examples import (
    ExportResult,
    full_reward,
    golden_path,
    kto_example,
    origin,
    preference_pairs,
    system_messages,
)
from josh.export.messages import (
    APIRETURN,
    ERROR_MARKS,
    FAILURE_MARK,
    OpenAIForms,
    conversation_key,
    is_customer,
    is_tool_result,
    to_openai,
)
from josh.export.trees import HarvestedTree, TrainingPath
from josh.search import NodeRecord
from josh.types import AssistantMessage, Message, UserMessage

COMMAND_END = "<COMMAND_END>"
# The script's own command pattern (line 55): written for a THOUGHTS/APICALL/SPEAK prompt
SCRIPT_COMMANDS = re.compile(r"(THOUGHTS|APICALL|SPEAK)(.*?)(?=THOUGHTS|APICALL|SPEAK|$)", re.DOTALL)


def clean_good_utterance(reply: Message, result: Message | None) -> bool:
    """The paper's check of a reply on a successful path (`finetune_agent.py` lines 59-73, see above)."""
    text = reply.content
    if APIRETURN in text or any(mark in text for mark in ERROR_MARKS):
        return False
    answered_failure = result is not None and FAILURE_MARK in result.content
    if "APICALL" in text:
        try:
            json.loads(SCRIPT_COMMANDS.findall(text)[1][1].replace(COMMAND_END, "").strip())
        except (IndexError, ValueError, RecursionError):
            return False
        if answered_failure:
            return False
    calls = reply.tool_calls if isinstance(reply, AssistantMessage) else ()
    # function calling, which the script never saw: the same checks on native tool calls
    return not (calls and (answered_failure or any(c.parse_error is not None for c in calls)))


def training_paths(tree: HarvestedTree) -> list[TrainingPath]:
    """The reference's `training_paths` of `tree`: as released, or as the reference would have recorded them."""
    if tree.paths is not None:
        return tree.paths
    nodes = tree.record.nodes
    children = tree.children()
    full: dict[int, list[Message]] = {}
    for node in nodes:  # parents come first
        full[node.id] = (full[node.parent] if node.parent is not None else []) + list(node.messages)
    created = {n.id: customer_turns(full[n.parent]) if n.parent is not None else 0 for n in nodes}
    collapses = sorted(
        (n for n in nodes if n.golden and n.reward_events), key=lambda n: customer_turns(_trimmed(full[n.id]))
    )
    paths: list[TrainingPath] = []
    seen: set[tuple[str, bool, bool]] = set()
    root = nodes[0] if nodes else None
    for collapse in collapses:
        step = customer_turns(_trimmed(full[collapse.id]))
        for node in _preorder(root, children) if root is not None else []:
            if node is not root and created[node.id] > step:
                continue
            path = TrainingPath(
                tuple(_trimmed(_until_step(full[node.id], step))), node.successful, node.golden
            )
            key = (conversation_key(path.messages), path.successful, path.golden)
            if key not in seen:
                seen.add(key)
                paths.append(path)
        root = collapse
    return paths


def customer_turns(messages: Sequence[Message]) -> int:
    """How many customer messages `messages` holds (the step of the agent turn that follows them)."""
    return sum(1 for m in messages if is_customer(m))


def _trimmed(messages: Sequence[Message]) -> list[Message]:
    """`messages` without its last user-role messages (the reference's `trim_user_msg`)."""
    end = len(messages)
    while end and isinstance(messages[end - 1], UserMessage):
        end -= 1
    return list(messages[:end])


def _until_step(messages: Sequence[Message], step: int) -> list[Message]:
    """The messages before the customer's message that follows the agent turn of `step`."""
    seen = 0
    for index, message in enumerate(messages):
        if is_customer(message):
            seen += 1
            if seen > step:
                return list(messages[:index])
    return list(messages)


def _preorder(root: NodeRecord, children: dict[int, list[NodeRecord]]) -> list[NodeRecord]:
    order, stack = [], [root]
    while stack:
        node = stack.pop()
        order.append(node)
        stack.extend(reversed(children[node.id]))
    return order


def reference_kto(trees: Iterable[HarvestedTree]) -> ExportResult:
    """KTO examples selected by `finetune_agent.py`'s rules (see the module's docstring)."""
    result = ExportResult("kto", "reference")
    seen: set[str] = set()
    for tree in trees:
        system, forms = system_messages(tree), OpenAIForms()
        for path in training_paths(tree):
            messages = list(path.messages)
            if not messages:
                continue
            key = conversation_key(messages)
            if key in seen:
                result.dropped["paths seen before (dedupe)"] += 1
                continue
            seen.add(key)
            if messages[-1].role == "user":
                messages.pop()
            for back, reply in enumerate(reversed(messages)):
                if reply.role == "user":
                    break
                if is_tool_result(reply):
                    continue
                at = len(messages) - 1 - back
                label = path.successful
                if label:
                    label = clean_good_utterance(reply, messages[at + 1] if back > 0 else None)
                example = kto_example(system, messages[:at], reply, label, tree.record.tools, forms)
                result.add(example, origin(tree))
    return result


def reference_sft(trees: Iterable[HarvestedTree]) -> ExportResult:
    """SFT examples selected by `sft_agent_successful.py`'s rules (see the module's docstring)."""
    result = ExportResult("sft", "reference")
    seen: set[str] = set()
    for tree in trees:
        if not full_reward(tree):
            result.skipped_trees["reward below 1.0"] += 1
            continue
        path = golden_path(tree)
        if path is None:
            result.skipped_trees["no golden path from the root"] += 1
            continue
        messages = [m for node in path for m in node.messages]
        system = system_messages(tree)
        for index, reply in enumerate(messages):
            if not isinstance(reply, AssistantMessage):
                continue
            following = messages[index + 1] if index + 1 < len(messages) else None
            if not clean_good_utterance(reply, following):
                result.dropped["replies that fail clean_good_utterance"] += 1
                continue
            conversation = system + [to_openai(m) for m in messages[: index + 1]]
            key = json.dumps(conversation, sort_keys=True)
            if key in seen:
                continue
            seen.add(key)
            result.add({"messages": conversation, "tools": tree.record.tools}, origin(tree))
    return result


def reference_dpo(trees: Iterable[HarvestedTree]) -> ExportResult:
    """DPO pairs from the reference KTO selection (the paper has no DPO script)."""
    return preference_pairs(reference_kto(trees), "reference")
