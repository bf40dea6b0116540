"""`josh score`: scoring recorded trajectories, error records for bad lines, and the benchmark's ceiling."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from josh.envs.toolwoz import ToolWOZEnvironment
from tests.test_cli_data import run_josh

pytestmark = pytest.mark.data


def test_exact_goal_calls_reach_the_ceiling(tmp_path: Path, toolwoz_env: ToolWOZEnvironment) -> None:
    lines = [
        json.dumps({"task_id": t.task_id, "calls": [g.to_dict() for g in t.goal_calls]})
        for t in toolwoz_env.tasks("test")
    ]
    src = tmp_path / "exact.jsonl"
    src.write_text("\n".join(lines) + "\n")
    summary_path = tmp_path / "summary.json"
    proc = run_josh("score", str(src), "--summary-json", str(summary_path))
    assert proc.returncode == 0, proc.stderr
    scored = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(scored) == 450
    assert all(len(r["results"]) == len(r["calls"]) for r in scored)
    summary = json.loads(summary_path.read_text())
    assert summary["perfect"] == 422 and round(summary["average_reward"], 3) == 0.980
    assert "average reward 0.980" in proc.stderr and "422 at 1.0" in proc.stderr
    mul0003 = next(r for r in scored if r["task_id"] == "MUL0003")
    assert mul0003["reward"] == 0.75 and mul0003["results"][2] == []  # "ask" vs "ask restaurant"


def test_bad_lines_become_error_records_and_the_rest_is_scored() -> None:
    good = {
        "task_id": "MUL0003",
        "calls": [
            {
                "name": "book_restaurant",
                "arguments": {"time": "18:45", "day": "sunday", "people": "6", "name": "ask"},
            }
        ],
    }
    stdin = "\n".join(
        [
            "not json",
            json.dumps({"task_id": "NOPE", "calls": []}),
            json.dumps({"calls": []}),
            json.dumps({"task_id": "MUL0003", "calls": "x"}),
            json.dumps(good),
            "",
        ]
    )
    proc = run_josh("score", input=stdin)
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r.get("line") for r in records[:4]] == [1, 2, 3, 4]
    assert all("error" in r for r in records[:4])
    assert records[1]["task_id"] == "NOPE" and "unknown ToolWOZ task" in records[1]["error"]
    assert records[4]["reward"] == 0.25 and records[4]["reward_events"] == ["book_restaurant"]
    assert "4 bad lines" in proc.stderr


def test_missing_input_file_is_a_clear_error(tmp_path: Path) -> None:
    proc = run_josh("score", str(tmp_path / "nope.jsonl"))
    assert proc.returncode != 0 and "does not exist" in proc.stderr and "Traceback" not in proc.stderr
