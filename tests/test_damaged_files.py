"""Damaged and odd run files end to end: a torn header resumes, odd encodings read, invalid trees end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.test_cli_data import run_josh
from tests.test_eval_cli import records


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
    assert "holds only a torn header (a run killed as it started); starting it over" in again.stderr
    assert "2 already done" not in again.stderr and "0 already done" in again.stderr
    assert sorted(r["task_id"] for r in records(torn)) == sorted(r["task_id"] for r in records(whole))
    assert json.loads(torn.read_text().splitlines()[0])["type"] == "header"
