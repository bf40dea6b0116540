"""What the mock endpoint makes once, not on every request: a task's script, and the paper's prompt markers
(read from the wheel, ~0.2 s of CPU) when the first requests arrive together; and not at all for josh's
preflight probe."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from josh.envs.toolwoz import Task, ToolWOZEnvironment
from josh.mock import policies
from josh.mock.policies import MockRequestError, MockScript, ScriptedToolWOZ, toolwoz_script

pytestmark = pytest.mark.data

TASK = "MUL0001"


def test_a_task_script_is_made_once(toolwoz_env: ToolWOZEnvironment) -> None:
    made: list[str] = []

    def script(task: Task) -> MockScript:
        made.append(task.task_id)
        return toolwoz_script(task)

    policy = ScriptedToolWOZ(toolwoz_env, script=script)
    body = {"messages": [{"role": "user", "content": "Hi!"}], "tools": [{"type": "function"}]}
    for _ in range(3):
        policy.complete(body, {"X-Josh-Task-Id": TASK})
    assert made == [TASK]


def test_the_paper_markers_are_read_once_when_requests_arrive_together(
    toolwoz_env: ToolWOZEnvironment, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[int] = []

    def slow_read() -> None:
        reads.append(1)
        time.sleep(0.2)  # as long as reading the wheel takes: the other threads arrive meanwhile
        return None

    monkeypatch.setattr(policies, "paper_markers", slow_read)
    policy = ScriptedToolWOZ(toolwoz_env)
    probe: dict[str, Any] = {"messages": [{"role": "user", "content": "Hello, who are you?"}]}
    refused: list[str] = []

    def one() -> None:
        try:
            policy.complete(probe, {})
        except MockRequestError as exc:
            refused.append(str(exc))

    threads = [threading.Thread(target=one) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(refused) == 8  # still refused, as before
    assert reads == [1]


def test_a_preflight_probe_reads_no_paper_prompts(
    toolwoz_env: ToolWOZEnvironment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """josh's probe (`OpenAIChatModel.check`) is refused (400) as before, without reading the wheel for it."""
    from josh.llm.openai_compat.model import _probe_params

    reads: list[int] = []
    monkeypatch.setattr(policies, "paper_markers", lambda: reads.append(1))
    policy = ScriptedToolWOZ(toolwoz_env)
    with pytest.raises(MockRequestError, match="cannot tell whether this request is for the agent or the user"):
        policy.complete(_probe_params("josh-mock-agent"), {})
    assert reads == []
