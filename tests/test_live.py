"""A run's progress when stderr is not a terminal: whole periodic lines, never a bar cut to 80 columns."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from josh.cli.live import LiveTotals, ProgressLines, elapsed
from tests.test_cli_data import run_josh

TOTALS = r"reward \d\.\d{3} · 100% \d\.\d{3}( · golden paths \d+)? · err \d+ · [\d,]+k? tok · (\$\d+\.\d\d|unpriced)"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def record(task: str, reward: float = 1.0) -> dict:
    return {"task_id": task, "trial": 0, "status": "success", "reward": reward}


def test_a_line_at_each_tenth_every_few_seconds_and_at_the_end() -> None:
    said: list[str] = []
    clock, totals = Clock(), LiveTotals()
    lines = ProgressLines(
        said.append, "eval toolwoz", "conversations", 450, 0, totals, every_s=30, clock=clock
    )
    for i in range(1, 451):
        clock.now += 0.125
        if i == 100:
            clock.now += 80  # a slow conversation: 1m20s, past every_s
        totals.add(record(f"T{i}", 1.0 if i % 2 else 0.5))
        lines.advance()
    lines.close()
    counts = [int(re.match(r"eval toolwoz: (\d+)/450 ", line)[1]) for line in said]  # type: ignore[index]
    assert counts == [45, 90, 100, 135, 180, 225, 270, 315, 360, 405, 450]
    assert said[2] == (
        "eval toolwoz: 100/450 conversations · reward 0.750 · 100% 0.500 · err 0 · 0 tok · $0.00 · 1m32s elapsed"
    )
    assert said[-1].endswith("2m16s elapsed")


def test_a_resumed_run_counts_from_what_is_done_and_the_end_is_said_once() -> None:
    said: list[str] = []
    totals = LiveTotals([record("T1"), record("T2"), record("T3")])
    lines = ProgressLines(said.append, "harvest tau2", "trees", 5, 3, totals, clock=Clock())
    lines.close()
    assert said == []  # nothing new: the start line said it
    for task in ("T4", "T5"):
        totals.add(record(task))
        lines.advance()
    lines.close()
    assert [line.split(" · ")[0] for line in said] == ["harvest tau2: 4/5 trees", "harvest tau2: 5/5 trees"]


def test_elapsed() -> None:
    assert [elapsed(s) for s in (0, 59.9, 80, 3599, 7500)] == ["0s", "59s", "1m20s", "59m59s", "2h05m"]


@pytest.mark.data
@pytest.mark.parametrize(
    ("command", "label", "kind"),
    [(["eval", "toolwoz", "--limit", "12"], "eval toolwoz", "conversations"),
     (["harvest", "toolwoz", "--limit", "2"], "harvest toolwoz", "trees")],
    ids=["eval", "harvest"],
)  # fmt: skip
def test_a_piped_dry_run_prints_whole_progress_lines(
    tmp_path: Path, command: list[str], label: str, kind: str
) -> None:
    proc = run_josh(*command, "--out", str(tmp_path / "run.jsonl"), env={"COLUMNS": "80"})  # stderr is a pipe
    assert proc.returncode == 0, proc.stderr
    assert "…" not in proc.stderr and "━" not in proc.stderr
    progress = [line for line in proc.stderr.splitlines() if line.startswith(f"{label}: ")]
    total = 12 if kind == "conversations" else 2
    assert progress and progress[-1].startswith(f"{label}: {total}/{total} {kind} · ")
    for line in progress:
        assert re.fullmatch(rf"{label}: \d+/{total} {kind} · {TOTALS} · \d+s elapsed", line), line


def test_a_tree_whose_root_is_golden_has_a_golden_path_as_in_the_summary() -> None:
    """tau2 telecom: the customer's opening can meet every goal, so the golden node is the root; the progress
    line said `golden paths 0` where the summary said 2."""
    from josh.runner.summary import summarize

    tree = {"task_id": "t", "trial": 0, "status": "success", "reward": 1.0,
            "nodes": [{"id": 0, "parent": None, "golden": True, "successful": True}]}  # fmt: skip
    totals = LiveTotals([tree, {**tree, "task_id": "u"}])
    assert "golden paths 2" in totals.line()
    assert summarize([tree, {**tree, "task_id": "u"}])["trees"]["with_golden_path"] == 2


@pytest.mark.data
def test_a_reader_that_goes_away_stops_the_run_as_ctrl_c_does(tmp_path: Path) -> None:
    """`josh eval ... 2>&1 | head -3` ended with exit 1, status `error` and no summary: now the run stops
    cleanly (status `cancelled`, summary written, exit 130) and `--resume` goes on."""
    import json
    import subprocess
    import sys

    out = tmp_path / "q.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "josh.cli.main", "eval", "toolwoz", "--limit", "8", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )  # fmt: skip
    assert proc.stdout is not None
    for _ in range(3):
        proc.stdout.readline()
    proc.stdout.close()  # as `head -3` does
    assert proc.wait(timeout=120) == 130
    status = json.loads(out.read_text().splitlines()[-1])
    assert status["type"] == "status" and status["status"] == "cancelled"
    assert out.with_suffix(".summary.json").is_file()


def test_tokens_under_a_thousand_are_counted_exactly() -> None:
    """A short run showed `0k tok`; under 1,000 the count is exact, above it in thousands."""

    def line(tokens: int) -> str:
        usage = {"prompt_tokens": tokens - tokens // 4, "completion_tokens": tokens // 4}
        return LiveTotals([{**record("T1"), "agent_usage": usage}]).line()

    assert " · 0 tok · " in LiveTotals([record("T1")]).line()
    assert " · 412 tok · " in line(412) and " · 999 tok · " in line(999)
    assert " · 1k tok · " in line(1000) and " · 41k tok · " in line(41_200)
