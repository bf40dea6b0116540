"""What the exporters read: harvested trees, from `josh harvest` run files (or the paper's released trees).

A tree is its `TreeRecord` (nodes holding the messages they add, with parent links and the successful and
golden marks). Trees read from the paper's files also keep the `training_paths` they came as, which the
reference selection reads as the paper's scripts did.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from josh.errors import JoshError
from josh.runner import read_run
from josh.search import NodeRecord, TreeRecord, tree_problem
from josh.types import Message

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingPath:
    """One of the reference's `training_paths`: a conversation in the agent's view, and its marks."""

    messages: tuple[Message, ...]
    successful: bool
    golden: bool


@dataclass
class HarvestedTree:
    """One tree to export. `paths`: the reference's training paths, for trees read from the paper's files."""

    record: TreeRecord
    paths: list[TrainingPath] | None = None

    def node_path(self, node: NodeRecord) -> list[NodeRecord]:
        """The nodes from the tree's first root down to `node` (included)."""
        by_id = {n.id: n for n in self.record.nodes}
        path = [node]
        while path[-1].parent is not None:
            path.append(by_id[path[-1].parent])
        return path[::-1]

    def children(self) -> dict[int, list[NodeRecord]]:
        """Each node's children, left to right."""
        found: dict[int, list[NodeRecord]] = {n.id: [] for n in self.record.nodes}
        for node in self.record.nodes:
            if node.parent is not None:
                found[node.parent].append(node)
        return found


@dataclass
class TreesInput:
    """The trees read, and what was skipped on the way (each with why)."""

    trees: list[HarvestedTree] = field(default_factory=list)
    source: dict[str, object] = field(default_factory=dict)
    errored: int = 0  # trees whose task failed outside the search (status "error"): nothing to export
    invalid: list[str] = field(default_factory=list)  # records that are not valid trees, and why
    damaged_lines: int = 0  # lines that are not records, a torn last line too (named in a logged warning)


def read_trees(paths: Sequence[Path]) -> TreesInput:
    """The trees of one or more `josh harvest` run files (the last record of each task and trial).

    A file that is missing, not a run file, or a run of another command (an eval run holds conversations,
    not trees) raises JoshError with one clear message. Damaged lines are skipped with a warning naming
    them; a record that is not a valid tree is skipped with a warning naming its task.
    """
    result = TreesInput(source={"trees": [str(p) for p in paths]})
    for path in paths:
        contents = read_run(path)
        command = str(contents.header.get("command") or "")
        if not command.startswith("harvest"):
            raise JoshError(
                f"{path} is a run file of `josh {command or '?'}`, not a trees file: export reads the trees "
                "that `josh harvest` writes"
            )
        result.damaged_lines += len(contents.damaged)
        for data in contents.keyed().values():
            name = f"{path}: tree {data.get('task_id')} (trial {data.get('trial', 0)})"
            try:
                record = TreeRecord.model_validate(data)
                problem = tree_problem(record.nodes)
            except ValidationError as exc:
                problem = _validation_message(exc)
            if problem is not None:
                result.invalid.append(f"{name}: {problem}")
                continue
            if record.status == "error":
                result.errored += 1
                continue
            result.trees.append(HarvestedTree(record))
    if result.invalid:
        shown = "; ".join(result.invalid[:5]) + (
            f"; and {len(result.invalid) - 5} more" if len(result.invalid) > 5 else ""
        )
        log.warning("skipped %d record(s) that are not valid trees: %s", len(result.invalid), shown)
    return result


def _validation_message(exc: ValidationError) -> str:
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "the record"
    more = f" (and {exc.error_count() - 1} more problems)" if exc.error_count() > 1 else ""
    return f"not a tree record: {where}: {first['msg']}{more}"
