"""The paper's released JOSH trees (`data/llama3-josh-toolwoz-for-KTO.zip` in the josh-train 0.1.4 wheel).

Each `records/training_data_v2/sim_<TASK>.json` holds `training_paths`: `[[messages, successful, golden],
...]`, every node's conversation as the reference recorded it at each collapse (OpenAI-style dicts, the
ReAct agent's view), and `100_percent_reached`. There is no tree structure, so the tree is rebuilt from
the paths' shared prefixes: a node ends where paths part or where a recorded path ends; its marks are those
of the paths ending at or below it (the reference marks every ancestor of a successful node too).

What the files cannot tell: a reward below 1.0 (only whether it reached 1.0), the goal calls and reward
events, which nodes ended their conversation, the agent's protocol notes (the filter reads the messages,
so it still applies), the system prompt (the caller supplies the one the paper's ReAct agent sends), and
siblings that said the same thing (they merge into one node).
"""

from __future__ import annotations

import io
import json
import logging
import re
import zipfile
from pathlib import Path
from typing import Any

from josh.errors import JoshError
from josh.export.messages import from_openai, to_openai
from josh.export.trees import HarvestedTree, TrainingPath, TreesInput
from josh.search import NodeRecord, TreeRecord
from josh.types import AssistantMessage, Message

REFERENCE_TREES_MEMBER = "data/llama3-josh-toolwoz-for-KTO.zip"
_SIM_FILE = re.compile(r"(?:^|/)sim_([^/]+)\.json$")
log = logging.getLogger(__name__)


def read_reference_trees(wheel: Path, *, system_prompt: str) -> TreesInput:
    """The paper's released trees from the josh-train 0.1.4 wheel at `wheel`, in the order its KTO script
    reads them (by task id, `finetune_agent.py` line 46). A file that is not a tree is skipped with a
    warning; a wheel without the archive raises JoshError."""
    try:
        with zipfile.ZipFile(wheel) as outer:
            archive = zipfile.ZipFile(io.BytesIO(outer.read(REFERENCE_TREES_MEMBER)))
    except (OSError, zipfile.BadZipFile, KeyError) as exc:
        raise JoshError(
            f"cannot read the paper's trees ({REFERENCE_TREES_MEMBER}) from {wheel}: {exc}; "
            "run `josh data fetch --force`"
        ) from None
    result = TreesInput(source={"reference_trees": f"josh-train 0.1.4 wheel: {REFERENCE_TREES_MEMBER}"})
    names = sorted((m for m in archive.namelist() if _SIM_FILE.search(m)), key=_task_id)
    with archive:
        for name in names:
            try:
                data = json.loads(archive.read(name))
                paths = parse_training_paths(data)
            except (ValueError, RecursionError) as exc:
                result.invalid.append(f"{name}: {exc}")
                continue
            record = tree_from_paths(
                _task_id(name), paths, reached_full=data.get("100_percent_reached") is True,
                system_prompt=system_prompt,
            )  # fmt: skip
            result.trees.append(HarvestedTree(record, paths))
    if result.invalid:
        log.warning("skipped %d of the paper's files that are not trees: %s", len(result.invalid),
                    "; ".join(result.invalid[:5]))  # fmt: skip
    if not result.trees:
        raise JoshError(f"{wheel} holds no readable tree in {REFERENCE_TREES_MEMBER}")
    return result


def _task_id(name: str) -> str:
    match = _SIM_FILE.search(name)
    return match.group(1) if match else name


def parse_training_paths(data: Any) -> list[TrainingPath]:
    """The `training_paths` of one released file; `ValueError` saying what is wrong when it has none."""
    if not isinstance(data, dict) or not isinstance(data.get("training_paths"), list):
        raise ValueError("no list `training_paths`")
    paths = []
    known: dict[str, Message] = {}  # one object per distinct message: the paths repeat their prefixes
    for number, item in enumerate(data["training_paths"]):
        if not (isinstance(item, list) and len(item) == 3 and isinstance(item[0], list)):
            raise ValueError(f"training path {number} is not [messages, successful, golden]")
        messages, successful, golden = item
        try:
            parsed = tuple(_interned(m, known) for m in messages)
        except ValueError as exc:
            raise ValueError(f"training path {number}: {exc}") from None
        paths.append(TrainingPath(parsed, successful is True, golden is True))
    return paths


def _interned(data: Any, known: dict[str, Message]) -> Message:
    key = json.dumps(data, sort_keys=True)
    if key not in known:
        known[key] = from_openai(data)
    return known[key]


def tree_from_paths(
    task_id: str, paths: list[TrainingPath], *, reached_full: bool, system_prompt: str
) -> TreeRecord:
    """A tree record rebuilt from the shared prefixes of `paths` (see the module's docstring)."""
    parent: list[int] = [-1]  # trie positions; position 0 is the empty conversation
    message: list[Any] = [None]
    children: list[list[int]] = [[]]
    ends = [False]
    successful, golden = [False], [False]
    index: dict[tuple[int, str], int] = {}
    for path in paths:
        position = 0
        for item in path.messages:
            key = (position, json.dumps(to_openai(item), sort_keys=True))
            following = index.get(key)
            if following is None:
                following = index[key] = len(parent)
                parent.append(position)
                message.append(item)
                children.append([])
                ends.append(False)
                successful.append(False)
                golden.append(False)
                children[position].append(following)
            position = following
        ends[position] = True
        successful[position] |= path.successful
        golden[position] |= path.golden
    for position in range(len(parent) - 1, 0, -1):  # a child always comes after its parent
        successful[parent[position]] |= successful[position]
        golden[parent[position]] |= golden[position]

    def chain(position: int, messages: list[Any]) -> int:
        """Extend `messages` down the trie while nothing parts or ends; the position where the node ends."""
        while len(children[position]) == 1 and not (ends[position] and messages):
            position = children[position][0]
            messages.append(message[position])
        return position

    nodes: list[NodeRecord] = []
    root_messages: list[Any] = []
    end = chain(0, root_messages)
    stack = [(end, 0)]
    nodes.append(NodeRecord(id=0, parent=None, messages=root_messages, successful=successful[end],
                            golden=golden[end]))  # fmt: skip
    while stack:
        position, node_id = stack.pop()
        made = []
        for child in children[position]:  # left to right: siblings get consecutive ids
            messages = [message[child]]
            end = chain(child, messages)
            made.append((end, len(nodes)))
            nodes.append(NodeRecord(id=len(nodes), parent=node_id, messages=messages,
                                    successful=successful[end], golden=golden[end]))  # fmt: skip
        stack.extend(reversed(made))  # the leftmost subtree next
    fc = any(isinstance(m, AssistantMessage) and m.tool_calls for p in paths for m in p.messages)
    return TreeRecord(
        task_id=task_id,
        status="success",
        reward=1.0 if reached_full else None,
        system_prompt=system_prompt,
        agent="fc" if fc else "react",
        nodes=nodes,
        notes=["rebuilt from the paper's training_paths: the reward is known only at 1.0 (None below)"],
    )
