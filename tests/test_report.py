"""`josh report A B`: like with like only (two evals or two harvests), and every setting that changes a result."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import Result
from typer.testing import CliRunner

from josh.benchmarks.toolwoz.config import ToolWOZEvalConfig, ToolWOZHarvestConfig
from josh.cli.main import app
from josh.cli.options import config_for_file
from josh.runner import open_run

EVAL = config_for_file(ToolWOZEvalConfig())
HARVEST = config_for_file(ToolWOZHarvestConfig())
MOCK_FLAGS = ["mock-mistake-rate", "mock-error-rate", "mock-hang-rate", "mock-malformed-rate", "mock-empty-rate",
              "mock-latency", "mock-hang-seconds", "mock-seed"]  # fmt: skip


def conversation(task: str, reward: float) -> dict[str, Any]:
    return {"task_id": task, "trial": 0, "status": "success", "termination": "user_ended", "reward": reward,
            "goal_calls": ["book_hotel"], "failed_goals": [] if reward == 1.0 else ["book_hotel"]}  # fmt: skip


def tree(task: str, reward: float) -> dict[str, Any]:
    return {**conversation(task, reward), "nodes": []}


def write_run(path: Path, command: str, config: dict[str, Any], records: list[dict[str, Any]]) -> str:
    writer = open_run(path, config=config, config_hash="0", seed=0, resume=False, command=command)
    for record in records:
        writer.write(record)
    writer.close("success")
    return str(path)


def run_report(*args: str) -> Result:
    return CliRunner().invoke(app, ["report", *args])


def report_json(a: str, b: str) -> dict[str, Any]:
    result = run_report(a, b, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def test_an_eval_and_a_harvest_are_refused_in_one_line_naming_which_is_which(tmp_path: Path) -> None:
    evaluated = write_run(tmp_path / "e.jsonl", "eval toolwoz", EVAL, [conversation("MUL1", 1.0)])
    harvested = write_run(tmp_path / "h.jsonl", "harvest toolwoz", HARVEST, [tree("MUL1", 0.5)])
    for a, b, kinds in [(evaluated, harvested, ("an eval", "a harvest")), (harvested, evaluated, ("a harvest",
                        "an eval"))]:  # fmt: skip
        for extra in ([], ["--json"]):
            result = run_report(a, b, *extra)
            assert result.exit_code == 1 and result.stdout == ""
            [line] = result.stderr.splitlines()
            assert f"{a} is {kinds[0]}" in line and f"{b} is {kinds[1]}" in line, line
            assert "compares two evals or two harvests" in line and "Traceback" not in line
    # an old run file without a command is told by its records
    headless = write_run(tmp_path / "old.jsonl", "", HARVEST, [tree("MUL1", 0.5)])
    assert run_report(evaluated, headless).exit_code == 1


def test_two_harvests_compare_with_their_search_settings(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a.jsonl", "harvest toolwoz", HARVEST, [tree("MUL1", 0.5), tree("MUL2", 1.0)])
    wider = {**HARVEST, "beam": HARVEST["beam"] * 2}
    b = write_run(tmp_path / "b.jsonl", "harvest tau2", wider, [tree("MUL1", 1.0), tree("MUL2", 1.0)])
    data = report_json(a, b)
    assert data["paired"]["common"] == 2 and data["paired"]["better"] == 1
    assert {"beam", "max-steps", "use-n", "finish"} <= set(data["settings"][0])
    assert "max-turns" not in data["settings"][0]  # neither harvest has one
    assert data["differing"] == ["beam"]


@pytest.mark.parametrize("model", [None, "scripted"], ids=["dry-run", "scripted-in-process"])
def test_the_settings_show_max_tokens_and_a_dry_runs_mock(tmp_path: Path, model: str | None) -> None:
    a = write_run(tmp_path / "a.jsonl", "eval toolwoz", {**EVAL, "model": model}, [conversation("MUL1", 1.0)])
    changed = {**EVAL, "model": model, "max-tokens": 512, "mock-mistake-rate": 0.5, "mock-error-rate": 0.1}
    b = write_run(tmp_path / "b.jsonl", "eval toolwoz", changed, [conversation("MUL1", 0.0)])
    data = report_json(a, b)
    first, second = data["settings"]
    assert (first["max-tokens"], second["max-tokens"]) == (256, 512)
    assert [key for key in first if key.startswith("mock-")] == MOCK_FLAGS
    assert (first["mock-mistake-rate"], second["mock-mistake-rate"]) == (0.0, 0.5)
    # the mock stands in for the model in a dry run: what is compared, not a difference to warn about
    assert data["differing"] == ["max-tokens"]
    table = run_report(a, b)
    assert "max-tokens (differs)" in table.stdout and "mock-error-rate" in table.stdout
    assert "the runs differ in max-tokens:" in table.stderr


def test_a_real_models_runs_show_no_mock_settings(tmp_path: Path) -> None:
    config = {**EVAL, "model": "gpt-4o"}
    a = write_run(tmp_path / "a.jsonl", "eval toolwoz", config, [conversation("MUL1", 1.0)])
    other = {**config, "model": "gpt-4.1"}
    b = write_run(tmp_path / "b.jsonl", "eval toolwoz", other, [conversation("MUL1", 1.0)])
    data = report_json(a, b)
    assert not [key for key in data["settings"][0] if key.startswith("mock-")]
    assert "max-tokens" in data["settings"][0] and data["differing"] == []
