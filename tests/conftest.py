"""Shared fixtures. Tests marked `data` use the real ToolWOZ data, fetched into the cache on first use."""

from __future__ import annotations

import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from josh.envs.toolwoz import ToolWOZEnvironment


@pytest.fixture(autouse=True)
def _josh_logger_restored() -> Iterator[None]:
    """A command run in-process (CliRunner) sets up josh's logger for the screen (its own handler, no
    propagation): put it back after each test, so that later tests' `caplog` sees josh's log lines."""
    logger = logging.getLogger("josh")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]


@pytest.fixture(scope="session")
def toolwoz_env() -> ToolWOZEnvironment:
    return ToolWOZEnvironment.load()


@pytest.fixture(scope="session")
def dry_run_trees(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Trees of real ToolWOZ train tasks from dry-run harvests (the scripted mock, in-process): 20 ReAct
    trees as `josh harvest toolwoz --limit 20` makes them, and 10 function-calling trees whose tool calls
    are sometimes malformed (lenient errors: the agent is told and goes on)."""
    folder = tmp_path_factory.mktemp("trees")
    runs = {
        "react": ["--limit", "20"],
        "fc": ["--limit", "10", "--agent", "fc", "--mock-malformed-rate", "0.2", "--lenient-errors"],
    }
    for name, options in runs.items():
        out = folder / f"{name}.jsonl"
        proc = subprocess.run(
            [sys.executable, "-m", "josh.cli.main", "harvest", "toolwoz", *options, "--out", str(out)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr
    return {name: folder / f"{name}.jsonl" for name in runs}
