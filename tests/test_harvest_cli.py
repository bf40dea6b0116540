"""`josh harvest toolwoz` end to end: a dry run on the scripted mock writes trees, resumes and summarises them."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from tests.test_cli_data import run_josh
from tests.test_eval_cli import records

pytestmark = pytest.mark.data


def test_a_dry_run_harvest_writes_trees_and_resumes(tmp_path: Path) -> None:
    out = tmp_path / "trees.jsonl"
    first = run_josh("harvest", "toolwoz", "--limit", "4", "--out", str(out))
    assert first.returncode == 0, first.stderr
    assert "DRY RUN" in first.stderr and "4 trees (4 tasks x 1 trial)" in first.stderr
    trees = records(out)
    assert [t["task_id"] for t in sorted(trees, key=lambda t: t["task_id"])] == sorted(
        json.loads(line)["task_id"]
        for line in run_josh("data", "tasks", "--split", "train").stdout.splitlines()[:4]
    )
    for tree in trees:
        assert tree["status"] == "success" and 0.0 <= tree["reward"] <= 1.0
        nodes = tree["nodes"]
        assert nodes[0]["parent"] is None and all(n["parent"] < n["id"] for n in nodes[1:])
        assert tree["system_prompt"] and tree["agent"] == "react"
        golden = [n["id"] for n in nodes if n["golden"]]
        # the golden path is a chain from the first root: each golden node's parent is golden too
        assert all(nodes[i]["parent"] is None or nodes[i]["parent"] in golden for i in golden)
    config = json.loads((tmp_path / "trees.config.json").read_text())
    assert config["split"] == "train" and config["beam"] == 8 and config["temperature"] == 1.0
    assert config["mock-mistake-rate"] == 0.3  # a dry run's oracle errs, so trees branch
    summary = json.loads((tmp_path / "trees.summary.json").read_text())
    assert summary["trees"]["trees"] == 4 and summary["trees"]["nodes"] == sum(len(t["nodes"]) for t in trees)
    assert "golden paths" in first.stderr and "with a golden path" in first.stdout
    more = run_josh("harvest", "toolwoz", "--limit", "6", "--out", str(out), "--resume")
    assert more.returncode == 0, more.stderr
    assert "6 trees (6 tasks x 1 trial), 4 already done" in more.stderr
    keys = Counter(t["task_id"] for t in records(out))
    assert len(keys) == 6 and set(keys.values()) == {1}


def test_harvest_refuses_a_greedy_agent_and_shares_evals_options(tmp_path: Path) -> None:
    out = tmp_path / "trees.jsonl"
    greedy = run_josh("harvest", "toolwoz", "--temperature", "0", "--out", str(out))
    assert greedy.returncode == 1 and "--temperature" in greedy.stderr and "above 0" in greedy.stderr
    assert not out.exists()
    retry = run_josh("harvest", "toolwoz", "--retry-errors", "--out", str(out))
    assert retry.returncode == 1 and "--retry-errors only applies with --resume" in retry.stderr
    helped = run_josh("harvest", "toolwoz", "--help", env={"COLUMNS": "200"})
    for flag in ("--beam", "--max-steps", "--use-n", "--strict-errors", "--prompts", "--concurrency", "--cache-dir",
                 "--max-outage", "--resume", "--model", "--user-model", "--mock-mistake-rate"):  # fmt: skip
        assert flag in helped.stdout, flag
    assert "--max-turns" not in helped.stdout  # a tree's limit is --max-steps


def test_only_a_dry_run_gets_the_dry_run_mistake_rate() -> None:
    """--base-url without --model is a real endpoint (its only model is used), not a dry run: adding the
    mock's mistake rate there made every such harvest fail ("--mock-mistake-rate only apply to a dry run")."""
    from josh.cli.harvest_cmd import DRY_RUN_MISTAKE_RATE, with_dry_run_mistakes

    assert with_dry_run_mistakes({}, None) == {"mock_mistake_rate": DRY_RUN_MISTAKE_RATE}
    assert with_dry_run_mistakes({"limit": 2}, None)["mock_mistake_rate"] == DRY_RUN_MISTAKE_RATE
    for real in ({"base_url": "http://127.0.0.1:8000/v1"}, {"model": "m"}, {"model": "scripted"}):
        assert with_dry_run_mistakes(real, None) == real
    assert with_dry_run_mistakes({"mock_mistake_rate": 0.0}, None) == {"mock_mistake_rate": 0.0}
    assert with_dry_run_mistakes({}, Path("harvest.yaml")) == {}
