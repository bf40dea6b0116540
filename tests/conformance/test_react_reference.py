"""Our ReactAgent against the reference's own ReAct turn, message by message, on tests/react_corpus.json.

The reference's `ReACTAgentSimulator.step` (parse_agent_message, handle_api and the 3-call loop) runs in a
subprocess (tests/conformance/react_harness.py) with the model replaced by the corpus replies. Compared
per case: the internal messages the turn adds, the tool calls it runs and their arguments, what the customer
is told and how many model calls it took. Where the reference crashes (the corpus says "crash"), our agent
must raise `AgentProtocolError` with `strict_errors` (with the same calls and messages before it) and go on
without it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from josh.agents import AgentProtocolError
from josh.agents.prompts import OUT_OF_RETRIES
from josh.envs.toolwoz import ToolWOZEnvironment, paths
from tests.test_react_corpus import CORPUS, CORPUS_PATH, run_ours

pytestmark = pytest.mark.data
HARNESS = Path(__file__).with_name("react_harness.py")


@pytest.fixture(scope="module")
def reference_turns(
    tmp_path_factory: pytest.TempPathFactory, toolwoz_env: ToolWOZEnvironment
) -> dict[str, dict[str, Any]]:
    pytest.importorskip(
        "pandas", reason="the reference implementation needs pandas (pip install -e '.[dev]')"
    )
    workdir = tmp_path_factory.mktemp("josh-reference-react")  # a few files from the wheel: cheap to extract
    proc = subprocess.run(
        [sys.executable, str(HARNESS), str(paths.wheel_path()), str(workdir), str(CORPUS_PATH)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return {turn["id"]: turn for turn in json.loads(proc.stdout)}


@pytest.mark.parametrize("case", CORPUS, ids=[c["id"] for c in CORPUS])
def test_react_turn_equals_the_reference(
    case: dict[str, Any], reference_turns: dict[str, dict[str, Any]]
) -> None:
    ref = reference_turns[case["id"]]
    assert (ref["crash"] is not None) == (case["ends"] == "crash"), ref["crash"]  # the corpus's hand marks
    assert len(ref["calls"]) == case["calls"] and ref["model_calls"] == len(case["replies"])
    strict = run_ours(case, strict=True)
    assert strict.calls == ref["calls"] and strict.model_calls == ref["model_calls"]
    if ref["crash"] is not None:
        assert isinstance(strict.error, AgentProtocolError), (ref["crash"], strict.error)
        # the turn so far, then the APICALL that crashed (kept in our record, never answered)
        assert strict.internal[:-1] == ref["internal"]
        assert strict.internal[-1]["role"] == "assistant" and "APICALL" in strict.internal[-1]["content"]
        assert run_ours(case, strict=False).error is None
        return
    [spoken] = ref["spoken"]
    assert (spoken["content"] == OUT_OF_RETRIES) == (case["ends"] == "out_of_calls")
    for ours in (strict, run_ours(case, strict=False)):
        assert ours.error is None
        assert ours.internal == ref["internal"]
        assert ours.calls == ref["calls"] and ours.model_calls == ref["model_calls"]
        assert ours.spoken == spoken["content"]
