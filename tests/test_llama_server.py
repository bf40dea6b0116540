"""Smoke test against a real OpenAI-compatible server: llama.cpp's own (PyPI xllamacpp) with SmolLM2-135M.

The model is weak; this checks what only a real server shows: its HTTP errors, chat template and message
rules (it refuses two trailing assistant messages, which the paper's ReAct feedback produces), end to end
through `josh eval`. The server comes from `../shared/tools/llama-server.sh` beside the checkout; the test
is skipped when that script is absent or cannot install the server.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from josh.llm import OpenAIChatModel
from josh.types import AssistantMessage, UserMessage
from tests.test_cli_data import run_josh
from tests.test_eval_cli import records

pytestmark = [pytest.mark.llama, pytest.mark.slow, pytest.mark.data]

SCRIPT = Path(__file__).resolve().parents[2] / "shared" / "tools" / "llama-server.sh"


@pytest.fixture(scope="module")
def llama_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not SCRIPT.is_file():
        pytest.skip(f"no {SCRIPT}")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    home = Path(os.environ.get("JOSH_LLAMA_HOME") or tmp_path_factory.mktemp("llama"))
    started = subprocess.run(
        ["bash", str(SCRIPT), str(home), str(port)], capture_output=True, text=True, timeout=900
    )
    pid = started.stdout.strip().splitlines()[-1] if started.stdout.strip() else ""
    if started.returncode != 0 or not pid.isdigit():
        pytest.skip(f"llama.cpp server did not start: {started.stderr.strip()[-300:]}")
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        os.kill(int(pid), signal.SIGTERM)


def test_two_trailing_assistant_messages_are_adapted_once(llama_url: str) -> None:
    async def ask() -> tuple[list[AssistantMessage], list[str]]:
        async with OpenAIChatModel("local", base_url=llama_url, timeout=120) as model:
            messages = [
                UserMessage(content="Hi, I need a train to Cambridge."),
                AssistantMessage(content="ERROR: NO COMMAND FOUND"),
                AssistantMessage(content="ERROR: NO COMMAND FOUND"),
            ]
            replies = await model.chat(messages, max_tokens=8)
            return replies, list(model.adaptations)

    replies, adaptations = asyncio.run(ask())
    assert len(replies) == 1 and replies[0].usage is not None and replies[0].usage.prompt_tokens > 0
    assert len(adaptations) == 1 and "Cannot have 2 or more assistant messages" in adaptations[0]


@pytest.mark.parametrize("agent", ["react", "fc"])
def test_eval_runs_end_to_end_on_llama_cpp(llama_url: str, tmp_path: Path, agent: str) -> None:
    out = tmp_path / "run.jsonl"
    proc = run_josh(
        "eval", "toolwoz", "--base-url", llama_url, "--agent", agent, "--user", "replay", "--limit", "1",
        "--max-turns", "4", "--timeout", "300", "--out", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    [record] = records(out)
    assert record["status"] == "success" and record["agent_usage"]["prompt_tokens"] > 0
    assert all(call["error"] is None for call in record["model_calls"])
    config = json.loads((tmp_path / "run.config.json").read_text())
    assert config["model"].endswith(".gguf")  # the endpoint's only model, found without --model
    summary = json.loads((tmp_path / "run.summary.json").read_text())
    assert summary["cost_usd"]["agent"] is None and "unpriced" in proc.stdout  # a local model has no price
