"""Damaged and odd run files end to end: a torn header resumes, odd encodings read, invalid trees end."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from josh.export import export_examples, read_trees
from josh.view import write_report
from tests.test_cli_data import run_josh
from tests.test_eval_cli import records
from tests.timing import ends_within


@pytest.mark.data
@pytest.mark.parametrize("command", ["eval", "harvest"])
def test_resume_of_a_file_holding_only_a_torn_header_starts_it_over(tmp_path: Path, command: str) -> None:
    whole = tmp_path / "whole.jsonl"
    assert run_josh(command, "toolwoz", "--limit", "2", "--out", str(whole)).returncode == 0
    torn = tmp_path / "torn.jsonl"
    torn.write_bytes(whole.read_bytes()[:200])  # a run killed while writing its header
    assert b"\n" not in torn.read_bytes()
    again = run_josh(command, "toolwoz", "--limit", "2", "--out", str(torn), "--resume")
    assert again.returncode == 0, again.stderr
    said = " ".join(again.stderr.split())  # the log's lines wrap at the terminal's width
    assert "holds only a torn header (a run killed as it started); starting it over" in said
    assert "2 already done" not in said and "0 already done" in said
    assert sorted(r["task_id"] for r in records(torn)) == sorted(r["task_id"] for r in records(whole))
    assert json.loads(torn.read_text().splitlines()[0])["type"] == "header"


# ------------------------------------------------------------------------- trees whose nodes form no tree
def is_tree(nodes: list[dict[str, Any]]) -> bool:
    """The rules, stated plainly: unique ids; the first node, and only it, has no parent; every other
    node's parent came before it; any two golden nodes lie on one path from the root."""
    ids = [n["id"] for n in nodes]
    if len(set(ids)) != len(ids):
        return False
    for position, n in enumerate(nodes):
        if (n["parent"] is None) != (position == 0) or (position and n["parent"] not in ids[:position]):
            return False
    parent = {n["id"]: n["parent"] for n in nodes}

    def up(node_id: int | None) -> set[int]:
        found = set()
        while node_id is not None:
            found.add(node_id)
            node_id = parent[node_id]
        return found

    golden = [n["id"] for n in nodes if n["golden"]]
    return all(a in up(b) or b in up(a) for a in golden for b in golden)


@st.composite
def tree_nodes(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Nodes with random ids and parent links: often a tree, often not (dangling, self, looping parents)."""
    count = draw(st.integers(0, 6))
    ids = draw(st.just(list(range(count))) | st.lists(st.integers(0, 6), min_size=count, max_size=count))
    nodes = []
    for position, node_id in enumerate(ids):
        links = st.none() | st.integers(-1, 7)
        if position:
            links = st.sampled_from(ids[:position]) | links
        message = (
            {"role": "user", "content": "hi"} if position == 0 else {"role": "assistant", "content": "ok"}
        )
        nodes.append(
            {"id": node_id, "parent": draw(links), "messages": [message], "golden": draw(st.booleans()),
             "successful": draw(st.booleans())}
        )  # fmt: skip
    return nodes


def trees_file(path: Path, trees: list[list[dict[str, Any]]]) -> Path:
    header = {"type": "header", "format_version": 1, "command": "harvest toolwoz", "config_hash": "x"}
    lines = [json.dumps(header)]
    for number, nodes in enumerate(trees):
        lines.append(
            json.dumps({"task_id": f"T{number}", "status": "success", "reward": 1.0, "nodes": nodes})
        )
    path.write_text("\n".join(lines) + "\n")
    return path


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(tree_nodes(), min_size=1, max_size=5))
def test_view_and_export_end_on_any_parent_links_and_warn_for_every_invalid_tree(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, trees: list[list[dict[str, Any]]]
) -> None:
    path = trees_file(tmp_path / "trees.jsonl", trees)
    invalid = {f"T{number}" for number, nodes in enumerate(trees) if not is_tree(nodes)}
    caplog.clear()
    with ends_within(10), caplog.at_level(logging.WARNING, logger="josh"):
        written = write_report(path, tmp_path / "trees.html")
    assert written.left_out == len(invalid) and written.items == len(trees) - len(invalid)
    assert all(f"{task_id}: " in caplog.text for task_id in invalid)
    caplog.clear()
    with ends_within(10), caplog.at_level(logging.WARNING, logger="josh"):
        source = read_trees([path])
        for kind in ("sft", "kto", "dpo"):
            export_examples(kind, source.trees)
    assert {t.record.task_id for t in source.trees} == {f"T{n}" for n in range(len(trees))} - invalid
    assert len(source.invalid) == len(invalid)
    assert all(f"tree {task_id} (trial 0): " in caplog.text for task_id in invalid)


def test_the_view_and_export_commands_end_on_trees_that_loop(tmp_path: Path) -> None:
    node = {"messages": [{"role": "user", "content": "hi"}], "golden": True}
    reply = {"role": "assistant", "content": "PLAN greet <COMMAND_END> SPEAK hello <COMMAND_END>"}
    path = trees_file(
        tmp_path / "trees.jsonl",
        [
            [
                {"id": 0, "parent": None, **node},
                {"id": 1, "parent": 0, **node, "messages": [reply]},
            ],  # a tree
            [{"id": 0, "parent": None, **node}, {"id": 1, "parent": 1, **node}],  # its own parent
            [{"id": 0, "parent": 0, **node}],
            [
                {"id": 0, "parent": None, **node},
                {"id": 1, "parent": 2, **node},
                {"id": 2, "parent": 1, **node},
            ],
            [
                {"id": 0, "parent": None, **node},
                {"id": 1, "parent": 0, **node},
                {"id": 2, "parent": 0, **node},
            ],
        ],
    )
    view = run_josh("view", str(path), "-o", str(tmp_path / "trees.html"), timeout=60)
    assert view.returncode == 0, view.stderr
    assert "1 trees" in view.stdout and "4 line(s) left out" in view.stdout
    export = run_josh("export", "sft", str(path), "-o", str(tmp_path / "sft"), timeout=60)
    assert export.returncode == 0, export.stderr
    for stderr in (view.stderr, export.stderr):
        text = " ".join(stderr.split())
        assert "4 record(s) that are not" in text and all(f"T{n}" in text for n in (1, 2, 3, 4))
        assert "is its own parent" in text and "golden path forks" in text


# ------------------------------------------------------------------------ run files in other encodings
def reencoded(path: Path, encoding: str) -> Path:
    odd = path.with_name(f"{encoding}-{path.name}")
    odd.write_bytes(path.read_text(encoding="utf-8").encode(encoding))
    return odd


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-16-be"])
def test_view_export_and_report_read_a_run_file_with_a_byte_order_mark_or_in_utf_16(
    tmp_path: Path, encoding: str
) -> None:
    reply = {"role": "assistant", "content": "PLAN greet <COMMAND_END> SPEAK hello ☎ <COMMAND_END>"}
    opening = {"role": "user", "content": "hi"}
    nodes = [
        {"id": 0, "parent": None, "messages": [opening], "golden": True},
        {"id": 1, "parent": 0, "messages": [reply], "golden": True, "successful": True},
    ]
    trees = reencoded(trees_file(tmp_path / "trees.jsonl", [nodes]), encoding)
    view = run_josh("view", str(trees), "-o", str(tmp_path / "trees.html"), timeout=60)
    assert view.returncode == 0, view.stderr
    assert (
        "1 trees" in view.stdout
        and "left out" not in view.stdout
        and "hello ☎" in (tmp_path / "trees.html").read_text()
    )
    export = run_josh("export", "sft", str(trees), "-o", str(tmp_path / "sft"), timeout=60)
    assert export.returncode == 0, export.stderr
    assert (
        json.loads((tmp_path / "sft" / "train.jsonl").read_text())["messages"][-1]["content"]
        == reply["content"]
    )
    header = {"type": "header", "format_version": 1, "command": "eval toolwoz", "config_hash": "x"}
    run = {"task_id": "MUL0001", "status": "success", "termination": "user_ended", "reward": 0.5}
    runs = tmp_path / "run.jsonl"
    runs.write_text(json.dumps(header) + "\n" + json.dumps(run) + "\n")
    report = run_josh("report", str(reencoded(runs, encoding)), "--json", timeout=60)
    assert report.returncode == 0, report.stderr
    assert json.loads(report.stdout)["average_reward"] == 0.5


@pytest.mark.data
@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16"])
def test_eval_resumes_a_run_file_with_a_utf_8_mark_and_refuses_one_in_utf_16(
    tmp_path: Path, encoding: str
) -> None:
    plain = tmp_path / "run.jsonl"
    assert run_josh("eval", "toolwoz", "--limit", "1", "--out", str(plain)).returncode == 0
    odd = reencoded(plain, encoding)
    before = odd.read_bytes()
    again = run_josh("eval", "toolwoz", "--limit", "2", "--out", str(odd), "--resume")
    if encoding == "utf-8-sig":
        assert again.returncode == 0, again.stderr
        assert "1 already done" in " ".join(again.stderr.split())
        text = odd.read_bytes().decode("utf-8-sig")  # the whole file: one encoding
        lines = [json.loads(line) for line in text.splitlines()]
        assert len([line for line in lines if "task_id" in line]) == 2
    else:
        said = " ".join(again.stderr.split())
        assert again.returncode == 1, said
        assert "is a run file in UTF-16" in said and "convert it to UTF-8 first" in said
        assert "Traceback" not in said and odd.read_bytes() == before
