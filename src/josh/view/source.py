"""What a viewer reads: a run file of harvested trees or of evaluated conversations, told apart and checked."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from josh.errors import JoshError
from josh.rollout.record import RolloutRecord
from josh.runner import read_run
from josh.runner.summary import latest_by_key
from josh.search.tree import TreeRecord, tree_problem
from josh.types import clean_text

log = logging.getLogger(__name__)

Kind = Literal["trees", "runs"]
# What `josh harvest` and `josh eval` write as the header's `command` (the benchmark name follows).
COMMAND_KINDS: dict[str, Kind] = {"harvest": "trees", "eval": "runs"}


@dataclass
class Skipped:
    """A record the viewer could not show: which one (by its position among the records) and why."""

    index: int
    task_id: str
    reason: str


@dataclass
class ViewSource:
    """A run file ready to be shown: its header, its records (the latest per task and trial), and what was
    left out (`damaged` lines the reader skipped, `skipped` records that are not of the file's kind)."""

    path: Path
    kind: Kind
    header: dict[str, Any]
    trees: list[TreeRecord] = field(default_factory=list)
    rollouts: list[RolloutRecord] = field(default_factory=list)
    damaged: list[tuple[int, str]] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    statuses: list[dict[str, Any]] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.trees) if self.kind == "trees" else len(self.rollouts)


def detect_kind(path: Path, header: dict[str, Any], records: list[dict[str, Any]]) -> Kind:
    """Trees or conversations: from the header's `command` ("harvest toolwoz", "eval toolwoz"), else from
    the records' fields. JoshError when neither tells."""
    command = header.get("command")
    if isinstance(command, str) and command.split(" ", 1)[0] in COMMAND_KINDS:
        return COMMAND_KINDS[command.split(" ", 1)[0]]
    for record in records:
        if "nodes" in record:
            return "trees"
        if "termination" in record or "calls" in record:
            return "runs"
    raise JoshError(
        f"{path} holds neither harvested trees nor evaluated conversations (its command is "
        f"{clean_text(str(command))!r}); josh view reads the run files of `josh harvest` and `josh eval`"
    )


def load_source(path: Path) -> ViewSource:
    """Read a run file with `josh.runner.read_run` (damaged lines are skipped with a warning) and check each
    record against the record type of its kind (a tree's nodes too, with `josh.search.tree_problem`); a
    record that does not fit is skipped with a warning and listed in `skipped`. JoshError when the file is
    not a josh run file."""
    contents = read_run(path)
    records = latest_by_key(contents.records)
    kind = detect_kind(path, contents.header, records)
    source = ViewSource(
        path=path, kind=kind, header=contents.header, damaged=contents.damaged, statuses=contents.statuses
    )
    model = TreeRecord if kind == "trees" else RolloutRecord
    for index, record in enumerate(records):
        try:
            parsed = model.model_validate(record)
        except ValidationError as exc:
            problem = exc.errors()[0]
            where = ".".join(str(part) for part in problem["loc"]) or "the record"
            reason: str | None = f"{where}: {problem['msg']}"
        else:  # a tree's nodes must form one (the drawing walks them)
            reason = tree_problem(parsed.nodes) if isinstance(parsed, TreeRecord) else None
        if reason is not None:
            source.skipped.append(Skipped(index, clean_text(str(record.get("task_id"))), clean_text(reason)))
            continue
        (source.trees if kind == "trees" else source.rollouts).append(parsed)  # type: ignore[arg-type]
    if source.skipped:
        shown = "; ".join(f"{s.task_id}: {s.reason}" for s in source.skipped[:5])
        more = f"; and {len(source.skipped) - 5} more" if len(source.skipped) > 5 else ""
        log.warning(
            "%s: left out %d record(s) that are not %s (%s%s)",
            path, len(source.skipped), "trees" if kind == "trees" else "conversations", shown, more,
        )  # fmt: skip
    return source
