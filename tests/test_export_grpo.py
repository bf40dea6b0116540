"""`josh export grpo`: a tree's branching points as groups of sibling turns, with rewards and advantages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from josh.export import HarvestedTree, export_examples, grpo_groups, read_trees, summary_of, write_export
from josh.search import NodeRecord, TreeRecord
from josh.types import AssistantMessage, UserMessage
from tests.test_cli_data import run_josh

KEYS = {"group_id", "task_id", "trial", "node", "prompt", "completion", "tools", "reward", "advantage"}


def _node(id_: int, parent: int | None, said: str, events: tuple[str, ...] = ()) -> NodeRecord:
    messages = [UserMessage(content="hello")] if parent is None else [
        AssistantMessage(content=said), UserMessage(content=f"customer after {said}")
    ]  # fmt: skip
    return NodeRecord(id=id_, parent=parent, messages=messages, reward_events=list(events))


def _tree() -> HarvestedTree:
    """Root 0 -> 1, 2; 1 -> 3, 4; 2 -> 5 (a lone child: no group). Goals a, b: node 1 met a, node 4 met b,
    node 5 met b; node 3 is the agent's stand-in for a failed reply."""
    nodes = [
        _node(0, None, ""),
        _node(1, 0, "one", ("a",)),
        _node(2, 0, "two"),
        _node(3, 1, "ERROR: NO COMMAND FOUND"),
        _node(4, 1, "four", ("b",)),
        _node(5, 2, "five", ("b",)),
    ]
    record = TreeRecord(
        task_id="T1", status="success", reward=1.0, goal_calls=["a", "b"], nodes=nodes, system_prompt="S"
    )
    return HarvestedTree(record)


def test_a_group_per_branching_point_with_the_best_reward_below_each_sibling() -> None:
    result = grpo_groups([_tree()])
    rows = {row["node"]: row for row in result.examples}
    # node 1: a, then b below it (node 4): 2 of 2; node 2: b below it (node 5): 1 of 2
    assert (rows[1]["reward"], rows[2]["reward"]) == (1.0, 0.5)
    assert (rows[1]["advantage"], rows[2]["advantage"]) == (0.25, -0.25)
    assert rows[1]["group_id"] == rows[2]["group_id"] == "T1/0/0"
    assert rows[1]["prompt"] == [{"role": "system", "content": "S"}, {"role": "user", "content": "hello"}]
    # the completion is the sibling's agent turn, not the customer's reply after it
    assert rows[1]["completion"] == [{"role": "assistant", "content": "one"}]
    # node 1's group (3, 4) loses its stand-in and with it the group; node 2 has one child: no group
    assert set(rows) == {1, 2}
    assert result.counts == {"rows": 2, "groups": 1, "groups with reward variance": 1}
    assert sum(result.dropped.values()) == 2


def test_a_tree_without_goal_calls_or_branches_gives_no_group() -> None:
    flat = _tree().record.model_copy(update={"nodes": [_node(0, None, ""), _node(1, 0, "one", ("a",))]})
    no_goals = _tree().record.model_copy(update={"goal_calls": []})
    result = export_examples("grpo", [HarvestedTree(flat), HarvestedTree(no_goals)])
    assert not result.examples
    assert dict(result.skipped_trees) == {
        "no branching point (a harvest with --beam 1 never branches)": 1,
        "no goal calls (no reward to compare)": 1,
    }


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _check_groups(rows: list[dict[str, Any]], counts: dict[str, int]) -> None:
    groups: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault(row["group_id"], []).append(row)
    assert counts["groups"] == len(groups) and counts["rows"] == len(rows) > 0
    varied = 0
    for members in groups.values():
        assert len(members) >= 2 and len({json.dumps(m["prompt"]) for m in members}) == 1
        assert abs(sum(m["advantage"] for m in members)) < 1e-9
        assert all(0.0 <= m["reward"] <= 1.0 and m["completion"][0]["role"] == "assistant" for m in members)
        for member in members:  # the agent's turn: no customer message in it
            assert not any(m["role"] == "user" and not m["content"].startswith("APIRETURN")
                           for m in member["completion"])  # fmt: skip
        varied += len({m["reward"] for m in members}) > 1
    assert counts["groups with reward variance"] == varied > 0


@pytest.mark.data
@pytest.mark.slow
def test_dry_run_trees_export_groups_that_datasets_loads(
    dry_run_trees: dict[str, Path], tmp_path: Path
) -> None:
    datasets = pytest.importorskip("datasets")
    out = tmp_path / "grpo"
    proc = run_josh("export", "grpo", str(dry_run_trees["react"]), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "grpo: groups with reward variance" in proc.stderr
    rows = _lines(out / "train.jsonl")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["kind"] == "grpo" and summary["examples"] == len(rows) > 0
    assert all(set(row) == KEYS for row in rows)
    _check_groups(rows, summary["counts"])
    loaded = datasets.load_dataset("json", data_files=str(out / "train.jsonl"), split="train")
    assert loaded.num_rows == len(rows) and set(loaded.column_names) == KEYS
    assert loaded[0]["advantage"] == pytest.approx(rows[0]["advantage"])
    again = run_josh("export", "grpo", str(dry_run_trees["react"]), "-o", str(out))
    assert again.returncode == 1 and "already exists; pass --force" in again.stderr
    nothing = run_josh("export", "grpo", "-o", str(out))
    assert nothing.returncode == 1 and "name the trees file(s)" in nothing.stderr
    assert "--reference-trees" not in nothing.stderr  # grpo has no such option


@pytest.mark.data
def test_function_calling_groups_load_with_their_tool_calls(
    dry_run_trees: dict[str, Path], tmp_path: Path
) -> None:
    datasets = pytest.importorskip("datasets")
    source = read_trees([dry_run_trees["fc"]])
    result = export_examples("grpo", source.trees)
    _check_groups(result.examples, result.counts)
    assert any(m["role"] == "tool" for row in result.examples for m in row["completion"])
    train = write_export(tmp_path, result, summary_of(result, source), force=False)
    loaded = datasets.load_dataset("json", data_files=str(train), split="train")
    assert loaded.num_rows == len(result.examples) and loaded[0]["tools"]
