"""Output to a pipe or a file is lines for grep: no message, log line or table title broken at 80 columns."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.test_report import EVAL, conversation, write_run

# No COLUMNS (it sets the width on purpose) and no FORCE_COLOR: the output is a plain pipe.
PIPED = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "FORCE_COLOR", "TTY_COMPATIBLE")}


def piped(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, env=PIPED, timeout=120)


def test_a_log_warning_is_one_line() -> None:
    script = (
        "import logging; from josh.cli.console import setup_logging; setup_logging(); "
        "logging.getLogger('josh.runner').warning('%s holds only a torn header (a run killed as it started); "
        "starting it over', 'a/rather/long/path/to/a/run/file/that/a/user/named/t.jsonl')"
    )
    proc = piped(sys.executable, "-c", script)
    assert proc.stderr.splitlines() == [
        "WARNING  a/rather/long/path/to/a/run/file/that/a/user/named/t.jsonl holds only a torn header "
        "(a run killed as it started); starting it over"
    ]


def test_a_report_piped_keeps_its_title_and_rows_whole(tmp_path: Path) -> None:
    run = tmp_path / ("a-run-file-whose-name-is-long-enough-to-outgrow-its-table" + ".jsonl")
    write_run(run, "eval toolwoz", EVAL, [conversation("MUL0003", 1.0), conversation("MUL0004", 0.5)])
    proc = piped(sys.executable, "-m", "josh.cli.main", "report", str(run))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert f"{run}  (eval toolwoz, config 0)" in lines  # the title, whole and unpadded
    assert any("100% success rate" in line and "(1 at 1.0)" in line for line in lines)
