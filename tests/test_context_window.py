"""A context too small for the first prompt stops a run before any work; a context overflow mid-run is told
apart from errors that running again can fix.

Local fake servers on 127.0.0.1 answer as llama.cpp's and vLLM's do: the context in `/v1/models` (and
llama.cpp's `/props`), prompts counted by `/tokenize` (vLLM: with the messages; llama.cpp: after
`/apply-template`), and their own HTTP 400 when a request does not fit. Their tokenizer is one token per 3
characters, so a count that is theirs shows (a chars/4 estimate would differ).
"""

from __future__ import annotations

import asyncio
import json
import math
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from josh.cli.run_flow import errors_line
from josh.llm import ContextLengthError, OpenAIChatModel, RetryPolicy
from josh.llm.base import is_context_overflow
from josh.types import SystemMessage, UserMessage
from tests.test_cli_data import run_josh
from tests.test_eval_cli import records

MODEL = "local-model"
TOOLS = [{"type": "function", "function": {"name": "find_hotel", "parameters": {"type": "object"}}}]
LLAMA_CPP_OVERFLOW = (
    "request ({n} tokens) exceeds the available context size ({ctx} tokens), try increasing it"
)
VLLM_OVERFLOW = (
    "This model's maximum context length is {ctx} tokens. However, you requested {total} tokens ({n} in the "
    "messages, {reply} in the completion). Please reduce the length of the messages or completion."
)


def tokens_of(text: str) -> int:
    return math.ceil(len(text) / 3)


def render(messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None) -> str:
    """The fake servers' chat template."""
    text = "".join(f"<|{m['role']}|>{m.get('content') or ''}<|end|>" for m in messages)
    return text + (json.dumps(tools) if tools else "") + "<|assistant|>"


class FakeServer:
    """llama.cpp's server (`flavour="llama.cpp"`), vLLM's (`"vllm"`), or one that says nothing of its context
    (`"openai"`), serving `MODEL` with a context of `n_ctx` tokens (a slot's, for llama.cpp). `tokenize=False`
    takes the tokenizer routes away; `overflow=True` answers every chat request with the server's context
    error, as a conversation that outgrew its context would get."""

    def __init__(self, flavour: str, n_ctx: int, *, tokenize: bool = True, overflow: bool = False) -> None:
        self.flavour, self.n_ctx, self.tokenize, self.overflow = flavour, n_ctx, tokenize, overflow
        self.seen: list[tuple[str, dict[str, Any]]] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake.seen.append((self.path, {}))
                fake.send(self, *fake.get(self.path))

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                fake.seen.append((self.path, body))
                fake.send(self, *fake.post(self.path, body))

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/v1"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    @staticmethod
    def send(handler: BaseHTTPRequestHandler, code: int, body: Any) -> None:
        data = json.dumps(body).encode()
        handler.send_response(code)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def get(self, path: str) -> tuple[int, Any]:
        if path == "/v1/models":
            entry: dict[str, Any] = {"id": MODEL, "object": "model", "created": 0, "owned_by": "someone"}
            if self.flavour == "llama.cpp":  # the model's training context; the slot's is in /props
                entry |= {"owned_by": "llamacpp", "meta": {"n_ctx_train": 32768, "n_vocab": 100}}
            elif self.flavour == "vllm":
                entry |= {"owned_by": "vllm", "max_model_len": self.n_ctx}
            return 200, {"object": "list", "data": [entry]}
        if path == "/props" and self.flavour == "llama.cpp":
            return 200, {"default_generation_settings": {"n_ctx": self.n_ctx}, "total_slots": 2}
        return 404, {"error": {"message": "File Not Found", "code": 404}}

    def post(self, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        if path == "/v1/chat/completions":
            return self.chat(body)
        if not self.tokenize:
            return 404, {"error": {"message": "File Not Found", "code": 404}}
        if self.flavour == "llama.cpp" and path == "/apply-template":
            return 200, {"prompt": render(body["messages"], body.get("tools"))}
        if self.flavour == "llama.cpp" and path == "/tokenize":
            return 200, {"tokens": list(range(tokens_of(body.get("content", ""))))}  # no content: none
        if self.flavour == "vllm" and path == "/tokenize":
            n = tokens_of(render(body["messages"], body.get("tools")))
            return 200, {"count": n, "max_model_len": self.n_ctx, "tokens": list(range(n))}
        return 404, {"error": {"message": "Not Found"}}

    def chat(self, body: dict[str, Any]) -> tuple[int, Any]:
        n, reply = tokens_of(render(body["messages"], body.get("tools"))), body.get("max_tokens") or 0
        if self.overflow and body.get("max_tokens") != 1:  # the preflight's probe still passes
            n = self.n_ctx + 1
        if self.flavour == "llama.cpp" and n > self.n_ctx:
            message = LLAMA_CPP_OVERFLOW.format(n=n, ctx=self.n_ctx)
            return 400, {"error": {"code": 400, "message": message, "type": "exceed_context_size_error"}}
        if self.flavour == "vllm" and n + reply > self.n_ctx:
            message = VLLM_OVERFLOW.format(ctx=self.n_ctx, total=n + reply, n=n, reply=reply)
            return 400, {"object": "error", "message": message, "type": "BadRequestError", "code": 400}
        message = {"role": "assistant", "content": "SPEAK Hello, how can I help? END"}
        return 200, {
            "id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": MODEL,
            "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": n, "completion_tokens": 8, "total_tokens": n + 8},
        }  # fmt: skip

    def chats(self) -> list[dict[str, Any]]:
        """The chat requests other than the preflight's probe."""
        return [b for p, b in self.seen if p == "/v1/chat/completions" and b.get("max_tokens") != 1]


@pytest.fixture
def servers() -> Iterator[list[FakeServer]]:
    started: list[FakeServer] = []
    yield started
    for server in started:
        server.close()


def serve(servers: list[FakeServer], flavour: str, n_ctx: int, **options: Any) -> FakeServer:
    server = FakeServer(flavour, n_ctx, **options)
    servers.append(server)
    return server


# ---------------------------------------------------------------------------------------------- the model


def ask(server: FakeServer, *, tools: bool) -> tuple[Any, Any]:
    async def run() -> tuple[Any, Any]:
        async with OpenAIChatModel(MODEL, base_url=server.base_url, timeout=5) as model:
            messages = [SystemMessage(content="You book hotels. " * 50), UserMessage(content="Hi")]
            return await model.context_window(), await model.prompt_size(messages, TOOLS if tools else None)

    return asyncio.run(run())


def expected_tokens(tools: bool) -> int:
    wire = [{"role": "system", "content": "You book hotels. " * 50}, {"role": "user", "content": "Hi"}]
    return tokens_of(render(wire, TOOLS if tools else None))


@pytest.mark.parametrize("tools", [False, True])
def test_llama_cpp_tells_its_slot_context_and_counts_with_its_template(
    servers: list[FakeServer], tools: bool
) -> None:
    server = serve(servers, "llama.cpp", 4096)
    window, size = ask(server, tools=tools)
    assert window.tokens == 4096 and window.source == "llama.cpp, per slot"  # /props, not n_ctx_train
    assert "--ctx-size" in window.fix
    assert size.tokens == expected_tokens(tools) and size.exact
    assert size.counted == "counted by the server's tokenizer and chat template"


@pytest.mark.parametrize("tools", [False, True])
def test_vllm_tells_its_max_model_len_and_counts_with_its_tokenizer(
    servers: list[FakeServer], tools: bool
) -> None:
    server = serve(servers, "vllm", 8192)
    window, size = ask(server, tools=tools)
    assert (window.tokens, window.source) == (8192, "vLLM's max_model_len")
    assert "--max-model-len" in window.fix
    assert size.tokens == expected_tokens(tools) and size.exact


def test_a_server_that_does_not_tell_its_context_is_not_asked_more(servers: list[FakeServer]) -> None:
    server = serve(servers, "openai", 0, tokenize=False)
    window, size = ask(server, tools=True)
    assert window is None and size is None


@pytest.mark.parametrize("flavour", ["llama.cpp", "vllm"])
def test_a_context_overflow_is_a_context_length_error(servers: list[FakeServer], flavour: str) -> None:
    server = serve(servers, flavour, 4096, overflow=True)

    async def run() -> None:
        retry = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.02)
        async with OpenAIChatModel(MODEL, base_url=server.base_url, timeout=5, retry=retry) as model:
            await model.chat([UserMessage(content="Hi")], max_tokens=256)

    with pytest.raises(ContextLengthError) as info:
        asyncio.run(run())
    assert "larger context" in str(info.value) and len(server.chats()) == 1  # not retried
    assert is_context_overflow(f"{type(info.value).__name__}: {info.value}")


# ---------------------------------------------------------------------------------------------- the run


def eval_toolwoz(out: Path, *options: str) -> Any:
    return run_josh("eval", "toolwoz", "--limit", "1", "--max-turns", "2", "--out", str(out), *options)


def error_line(stderr: str) -> str:
    [line] = [line for line in stderr.splitlines() if line.startswith("error:")]
    return line


@pytest.mark.data
@pytest.mark.parametrize(
    ("flavour", "source", "fix"),
    [("llama.cpp", "llama.cpp, per slot", "--ctx-size"), ("vllm", "vLLM's max_model_len", "--max-model-len")],
)
def test_a_first_prompt_that_does_not_fit_stops_the_run_before_work(
    servers: list[FakeServer], tmp_path: Path, flavour: str, source: str, fix: str
) -> None:
    """The paper's ReAct prompt is about 15,900 characters: 5,300 of these servers' tokens."""
    server = serve(servers, flavour, 4096)
    out = tmp_path / "run.jsonl"
    proc = eval_toolwoz(out, "--base-url", server.base_url, "--user", "replay")
    assert proc.returncode == 1, proc.stderr
    line = error_line(proc.stderr)
    assert f"the agent's model ({MODEL} at {server.base_url}) has a 4,096-token context ({source})" in line
    prompt = int(line.split("its first prompt is ")[1].split(" tokens")[0].replace(",", ""))
    assert 5_000 < prompt < 5_600 and "(system prompt and tools, counted by the server's tokenizer" in line
    assert "a reply may take 256 more (--max-tokens)" in line and fix in line
    assert "Traceback" not in proc.stderr and not out.exists() and server.chats() == []


@pytest.mark.data
def test_the_run_goes_on_when_the_first_prompt_fits(servers: list[FakeServer], tmp_path: Path) -> None:
    server = serve(servers, "llama.cpp", 8192)
    out = tmp_path / "run.jsonl"
    proc = eval_toolwoz(out, "--base-url", server.base_url, "--user", "replay")
    assert proc.returncode == 0, proc.stderr
    assert len(records(out)) == 1 and server.chats()


@pytest.mark.data
def test_without_a_tokenizer_the_prompt_is_estimated(servers: list[FakeServer], tmp_path: Path) -> None:
    server = serve(servers, "vllm", 3000, tokenize=False)
    proc = eval_toolwoz(tmp_path / "run.jsonl", "--base-url", server.base_url, "--user", "replay")
    assert proc.returncode == 1, proc.stderr
    line = error_line(proc.stderr)
    assert "has a 3,000-token context" in line and "its first prompt is about 3," in line
    assert "estimated at 4 characters a token" in line


@pytest.mark.data
def test_the_customer_side_is_checked_too(servers: list[FakeServer], tmp_path: Path) -> None:
    agent, customer = serve(servers, "llama.cpp", 16384), serve(servers, "vllm", 600)
    proc = eval_toolwoz(
        tmp_path / "run.jsonl", "--base-url", agent.base_url, "--user-base-url", customer.base_url
    )
    assert proc.returncode == 1, proc.stderr
    line = error_line(proc.stderr)
    assert line.startswith(f"error: the customer's model ({MODEL} at {customer.base_url}) has a 600-token")
    assert "(its instructions, counted by the server's tokenizer and chat template)" in line
    assert "--user-max-tokens" in line


@pytest.mark.data
def test_conversations_that_outgrew_the_context_are_not_offered_a_plain_retry(
    servers: list[FakeServer], tmp_path: Path
) -> None:
    server = serve(servers, "llama.cpp", 16384, overflow=True)
    out = tmp_path / "run.jsonl"
    proc = eval_toolwoz(out, "--base-url", server.base_url, "--user", "replay")
    assert proc.returncode == 3, proc.stderr
    [record] = records(out)
    assert record["error"].startswith("ContextLengthError: ")
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("1 of 1 conversations ended in an error (counted as reward 0): they outgrew")
    assert "running them as they are would repeat that: give the server a larger context" in last
    assert "-c / --ctx-size" in last and "; run them again" not in last


def test_the_closing_line_tells_overflows_from_other_errors() -> None:
    overflow = {"status": "error", "error": "ContextLengthError: the conversation is longer than ..."}
    timeout = {"status": "error", "error": "RetryableLLMError: the endpoint did not answer in time"}
    again = "the same command plus --resume --out r.jsonl"
    plain = errors_line([timeout, timeout], 5, "conversations", again)
    assert plain == (
        "2 of 5 conversations ended in an error (counted as reward 0); run them again with the same command "
        "plus --resume --out r.jsonl --retry-errors"
    )
    mixed = errors_line([overflow, timeout, overflow], 5, "conversations", again)
    assert mixed.startswith("3 of 5 conversations ended in an error (counted as reward 0): 2 outgrew")
    assert "larger context" in mixed and mixed.endswith("run them again with " + again + " --retry-errors")
