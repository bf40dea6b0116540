"""The reference implementation as an oracle: josh-train 0.1.4 running in its own process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from josh.envs.toolwoz import ToolWOZEnvironment, paths

HARNESS = Path(__file__).with_name("reference_harness.py")


class ReferenceOracle:
    def __init__(self, workdir: Path):
        pytest.importorskip(
            "pandas", reason="the reference implementation needs pandas (pip install -e '.[dev]')"
        )
        self.proc = subprocess.Popen(
            [sys.executable, str(HARNESS), str(paths.wheel_path()), str(workdir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def _ask(self, request: dict[str, Any]) -> Any:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError("the reference harness died; see its stderr above")
        return json.loads(line)

    def goals(self) -> dict[str, list[dict[str, Any]]]:
        return self._ask({"op": "goals"})

    def run(self, task_id: str, calls: list[tuple[Any, Any]]) -> dict[str, Any]:
        return self._ask({"op": "run", "task_id": f"{task_id}.json", "calls": [list(c) for c in calls]})

    def turns(self, task_id: str, turns: list[list[tuple[Any, Any]]]) -> dict[str, Any]:
        """The reference JOSH search's crediting of whole agent turns (see reference_harness.py)."""
        request = {"op": "turns", "task_id": f"{task_id}.json", "turns": [[list(c) for c in t] for t in turns]}
        return self._ask(request)

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait(timeout=30)


@pytest.fixture(scope="session")
def reference(request: pytest.FixtureRequest, toolwoz_env: ToolWOZEnvironment) -> ReferenceOracle:
    # The reference's own build takes ~40 s; its output is kept in pytest's cache between runs.
    workdir = Path(request.config.cache.mkdir("josh-reference-0.1.4"))
    oracle = ReferenceOracle(workdir)
    yield oracle
    oracle.close()
