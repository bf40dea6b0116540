"""`josh eval toolwoz` passes its protocol flags through: per-trial seeds, --cache-dir, --strict-errors.

Each test runs the real CLI in a subprocess and checks the effect where it lands: in the requests the
endpoint received (an in-process mock that records them) and in the run file's records.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from josh.envs.toolwoz import ToolWOZEnvironment
from josh.mock import MockConfig, MockServer
from tests.test_cli_data import run_josh
from tests.test_eval_cli import records

pytestmark = pytest.mark.data


class RecordingMock:
    """The scripted mock endpoint, keeping (headers, body) of every chat request it answers."""

    def __init__(self, env: ToolWOZEnvironment) -> None:
        self.server = MockServer(env, MockConfig())
        self.requests: list[tuple[dict[str, str], dict[str, Any]]] = []
        answer = self.server.policy.complete_async

        async def complete(body: dict[str, Any], headers: dict[str, str], **timing: Any) -> dict[str, Any]:
            self.requests.append(({k.lower(): v for k, v in headers.items()}, body))  # no asserts here
            return await answer(body, headers, **timing)

        self.server.policy.complete_async = complete  # type: ignore[method-assign]

    def flags(self) -> list[str]:
        url = self.server.base_url
        return ["--model", "josh-mock-agent", "--base-url", url, "--user-model", "josh-mock-user",
                "--user-base-url", url]  # fmt: skip

    def conversation_requests(self) -> list[tuple[dict[str, str], dict[str, Any]]]:
        """The requests made inside conversations (the start-up check sends no trial header)."""
        return [(h, b) for h, b in self.requests if "x-josh-trial" in h]


@pytest.fixture
def recording_mock(toolwoz_env: ToolWOZEnvironment) -> Iterator[RecordingMock]:
    mock = RecordingMock(toolwoz_env)
    with mock.server:
        yield mock


def test_trial_t_sends_seed_plus_t_and_cache_dir_answers_a_rerun(
    tmp_path: Path, recording_mock: RecordingMock
) -> None:
    cache = tmp_path / "cache"
    args = ["eval", "toolwoz", *recording_mock.flags(), "--task", "MUL0003", "--trials", "2",
            "--cache-dir", str(cache)]  # fmt: skip
    first = run_josh(*args, "--out", str(tmp_path / "first.jsonl"))
    assert first.returncode == 0, first.stderr
    rows = records(tmp_path / "first.jsonl")
    # --seed defaults to 42 and trial t sends 42 + t: trial 0 -> 42, trial 1 -> 43.
    assert sorted((r["trial"], r["seed"]) for r in rows) == [(0, 42), (1, 43)]
    sent = recording_mock.conversation_requests()
    seeds = {(h["x-josh-trial"], h["x-josh-role"], b.get("seed")) for h, b in sent}
    assert seeds == {("0", "agent", 42), ("0", "user", 42), ("1", "agent", 43), ("1", "user", 43)}
    assert not any(c["cached"] for r in rows for c in r["model_calls"])
    answered = len(sent)
    assert answered == sum(len(r["model_calls"]) for r in rows)

    # The same run again with the same --cache-dir: every call comes from the cache, none reaches the mock.
    again = run_josh(*args, "--out", str(tmp_path / "again.jsonl"))
    assert again.returncode == 0, again.stderr
    cached = records(tmp_path / "again.jsonl")
    calls = [c for r in cached for c in r["model_calls"]]
    assert len(calls) == answered and all(c["cached"] for c in calls)
    assert len(recording_mock.conversation_requests()) == answered
    assert {r["task_id"]: r["reward"] for r in cached} == {"MUL0003": 0.75}  # 3 of its 4 goals (see MUL0003)


@pytest.mark.parametrize(
    ("flag", "termination", "reward"),
    [("--strict-errors", "agent_error", 0.0), ("--lenient-errors", "user_ended", 0.0)],
)
def test_strict_errors_end_a_conversation_on_malformed_arguments(
    tmp_path: Path, flag: str, termination: str, reward: float
) -> None:
    """Every tool call's arguments are truncated JSON (malformed rate 1). The reference crashes on the first
    one (reward 0, as --strict-errors records it); --lenient-errors answers each bad call with an error and
    the customer hangs up after the agent's calls all fail (no goal met: reward 0)."""
    out = tmp_path / "run.jsonl"
    proc = run_josh("eval", "toolwoz", "--agent", "fc", "--task", "MUL0003", "--mock-malformed-rate", "1",
                    flag, "--out", str(out))  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    [row] = records(out)
    assert (row["status"], row["termination"], row["reward"]) == ("success", termination, reward)
    if flag == "--strict-errors":
        # one customer message, then the agent's first (malformed) call ends the conversation
        assert len(row["messages"]) == 1 and row["calls"] == []
    else:  # the bad calls were answered with an error (never run) and the conversation went on
        assert row["calls"] == [] and len(row["messages"]) > 1
        assert any(n.startswith("turn 0: malformed tool-call arguments") for n in row["notes"])
    saved = json.loads((tmp_path / "run.config.json").read_text())
    assert saved["strict-errors"] is (flag == "--strict-errors")
